"""Store: one record per run (and its predictions), written whole or not at all; resumable.

Layout of a run folder:
    RUN_DIR/records/<run_id>.json       the run's `RunRecord` (ok or failed)
    RUN_DIR/predictions/<run_id>.npz    per-example predictions and labels of each evaluated split
    RUN_DIR/plan.json                   every planned run, so a report can list the missing ones
Predictions are written before the record that points at them, each atomically: a crash leaves
no record (the run is redone) or a whole record with its predictions.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ptft_bench import atomic
from ptft_bench.record import RunRecord


class RunStore:
    """Read and write run records under one run folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.predictions_dir = self.root / "predictions"

    def path(self, run_id: str) -> Path:
        return self.records_dir / f"{run_id}.json"

    def write(
        self, record: RunRecord, predictions: dict[str, dict[str, np.ndarray]] | None = None
    ) -> Path:
        """Write `record` (and `predictions`: {split: {"pred": array, "label": array}})."""
        if predictions:
            rel = self.write_predictions(record.run_id, predictions)
            splits = {name: int(len(p["pred"])) for name, p in predictions.items()}
            record.predictions = {"file": rel, "splits": splits}
        return atomic.write_json(self.path(record.run_id), record.to_dict())

    def write_predictions(self, run_id: str, predictions: dict[str, dict[str, np.ndarray]]) -> str:
        arrays = {}
        for split, p in predictions.items():
            arrays[f"pred_{split}"] = _compact(p["pred"])
            arrays[f"label_{split}"] = _compact(p["label"])
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path = self.predictions_dir / f"{run_id}.npz"
        atomic.write_bytes(path, buf.getvalue())
        return str(path.relative_to(self.root))

    def read(self, run_id: str) -> RunRecord | None:
        try:
            return RunRecord.from_dict(json.loads(self.path(run_id).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def records(self) -> list[RunRecord]:
        out = []
        if self.records_dir.is_dir():
            for p in sorted(self.records_dir.glob("*.json")):
                try:
                    out.append(RunRecord.from_dict(json.loads(p.read_text())))
                except (ValueError, TypeError):
                    continue  # cannot happen with atomic writes; tolerate hand-edited files
        return out

    def status(self, run_id: str) -> str | None:
        rec = self.read(run_id)
        return rec.status if rec else None

    def write_plan(self, suite: str, runs: list[dict[str, Any]]) -> None:
        """Merge `runs` into plan.json (a folder can hold several suites' or shards' plans)."""
        path = self.root / "plan.json"
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError):
            plan = {"suite": suite, "runs": []}
        known = {r["run_id"] for r in plan.get("runs", [])}
        plan["runs"] = plan.get("runs", []) + [r for r in runs if r["run_id"] not in known]
        atomic.write_json(path, plan)

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed process (never whole records)."""
        n = 0
        for folder in (self.records_dir, self.predictions_dir, self.root):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    n += 1
        return n


def load_predictions(run_dir: Path, record: RunRecord) -> dict[str, dict[str, np.ndarray]] | None:
    """{split: {"pred", "label"}} of a record, or None when it carries no (readable) predictions."""
    info = record.predictions or {}
    path = Path(run_dir) / info.get("file", "")
    if not info.get("file") or not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {
                split: {"pred": z[f"pred_{split}"], "label": z[f"label_{split}"]}
                for split in info.get("splits", {})
            }
    except (OSError, ValueError, KeyError):
        return None


def _compact(values: np.ndarray) -> np.ndarray:
    """Class ids as the smallest integer type that holds them; values as float32."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        for dtype in (np.int8, np.int16, np.int32):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return arr.astype(dtype)
        return arr.astype(np.int64)
    return arr.astype(np.float32)
