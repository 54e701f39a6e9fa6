"""The results store: one JSON record per run, written whole or not at all.

Layout: RUN_DIR/records/<run_id>.json (finished runs, ok or failed), RUN_DIR/plan.json (every
planned run, so a report can list the missing ones). A record is written to a temporary file in
the same folder and renamed over the final name: a crash leaves either no record or a whole one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the record."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(obj), f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """Read and write run records under one run folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"

    def path(self, run_id: str) -> Path:
        return self.records_dir / f"{run_id}.json"

    def write(self, record: dict[str, Any]) -> Path:
        path = self.path(record["run_id"])
        atomic_write_json(path, record)
        return path

    def read(self, run_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(run_id).read_text())
        except (OSError, ValueError):
            return None

    def records(self) -> list[dict[str, Any]]:
        out = []
        if self.records_dir.is_dir():
            for p in sorted(self.records_dir.glob("*.json")):
                try:
                    out.append(json.loads(p.read_text()))
                except ValueError:
                    continue  # cannot happen with atomic writes; tolerate hand-edited files
        return out

    def status(self, run_id: str) -> str | None:
        rec = self.read(run_id)
        return rec.get("status") if rec else None

    def write_plan(self, suite: str, runs: list[dict[str, Any]]) -> None:
        """Merge `runs` into plan.json (a folder can hold several suites' or shards' plans)."""
        path = self.root / "plan.json"
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError):
            plan = {"suite": suite, "runs": []}
        known = {r["run_id"] for r in plan.get("runs", [])}
        plan["runs"] = plan.get("runs", []) + [r for r in runs if r["run_id"] not in known]
        atomic_write_json(path, plan)

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed process (never whole records)."""
        n = 0
        if self.records_dir.is_dir():
            for p in self.records_dir.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                n += 1
        return n
