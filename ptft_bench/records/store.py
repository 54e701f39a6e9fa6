"""Store: one record per run (and its predictions), written whole or not at all; resumable.

Layout of a run folder:
    RUN_DIR/records/<run_id>.json       the run's `RunRecord` (ok or failed)
    RUN_DIR/predictions/<run_id>.npz    per-example predictions and labels of each evaluated split
    RUN_DIR/claims/<run_id>.claim       a run being trained now: {"pid", "host", "start"}
    RUN_DIR/plan.json                   every planned run, so a report can list the missing ones
Predictions are written before the record that points at them, each atomically: a crash leaves
no record (the run is redone) or a whole record with its predictions.

Claims make concurrent workers (`--jobs`, or several `ptft-bench run` on one folder) exclusive:
a claim is created with O_CREAT | O_EXCL, which exactly one process wins. A claim whose process
is gone (a worker killed with SIGKILL; a zombie; a pid since reused, told apart by the process's
start time) is stale: the next start takes it over, by renaming it
away first, which again exactly one process wins. A claim from another host cannot be checked
and is respected; shard across machines with `--shard` instead.
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

from ptft_bench import atomic
from ptft_bench.records.record import RunRecord


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
            texts = {name: p["texts"] for name, p in predictions.items() if "texts" in p}
            if texts:  # generation runs: the decoded texts, per split in split order
                path = self.predictions_dir / f"{record.run_id}.texts.json"
                atomic.write_json(path, texts)
                record.predictions["texts"] = str(path.relative_to(self.root))
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

    def write_plan(
        self, suite: str, runs: list[dict[str, Any]], sweep: dict[str, Any] | None = None
    ) -> None:
        """Merge `runs` into plan.json (a folder can hold several suites' or shards' plans).

        `sweep` ({"started_at", "estimate_seconds", "basis", ...}) is appended to the plan's
        list of sweeps; `finish_sweep` adds its end, so a report shows estimate versus actual.
        """
        plan = self.read_plan() or {"suite": suite, "runs": []}
        known = {r["run_id"] for r in plan.get("runs", [])}
        plan["runs"] = plan.get("runs", []) + [r for r in runs if r["run_id"] not in known]
        if sweep is not None:
            plan["sweeps"] = [*plan.get("sweeps", []), sweep]
        atomic.write_json(self.root / "plan.json", plan)

    def read_plan(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / "plan.json").read_text())
        except (OSError, ValueError):
            return None

    def finish_sweep(self, **fields: Any) -> None:
        """Add `fields` (finished_at, seconds, ...) to the last sweep of plan.json."""
        plan = self.read_plan()
        if plan and plan.get("sweeps"):
            plan["sweeps"][-1].update(fields)
            atomic.write_json(self.root / "plan.json", plan)

    # -- claims ----------------------------------------------------------------------------------
    def claim_path(self, run_id: str) -> Path:
        return self.root / "claims" / f"{run_id}.claim"

    def claim(self, run_id: str, pid: int | None = None) -> bool:
        """Claim `run_id` for process `pid` (default: this one); False if another live one has it."""
        path = self.claim_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # the second try follows the takeover of a stale claim
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_if_stale(path):
                    return False
                continue
            pid = pid or os.getpid()
            info = {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            return True
        return False

    def release(self, run_id: str) -> None:
        self.claim_path(run_id).unlink(missing_ok=True)

    def claimed_by_other(self, run_id: str) -> bool:
        """True when a live process other than this one holds the claim."""
        owner = _claim_owner(self.claim_path(run_id))
        return owner is not None and owner[0] != os.getpid() and _alive(owner)

    def _take_over_if_stale(self, path: Path) -> bool:
        owner = _claim_owner(path)
        if owner is None or _alive(owner):  # unreadable (being written) or live: respect it
            return False
        try:  # exactly one process wins the rename of a stale claim
            os.rename(path, path.with_name(f".{path.name}.stale-{os.getpid()}"))
        except FileNotFoundError:
            return False
        path.with_name(f".{path.name}.stale-{os.getpid()}").unlink(missing_ok=True)
        return True

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed process (never whole records)."""
        n = 0
        for folder in (self.records_dir, self.predictions_dir, self.root):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    n += 1
        return n


def this_process() -> dict[str, Any]:
    """{"pid", "host", "start"}: who holds a claim (or owns a tuning trial), checkable later."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}


def process_alive(info: dict[str, Any] | None) -> bool:
    """False only for a process on this host that is gone; another host's is assumed alive."""
    if not info or not info.get("pid"):
        return False
    if info.get("host") != socket.gethostname():
        return True
    return _alive((int(info["pid"]), info.get("start")))


def _claim_owner(path: Path) -> tuple[int, str | None] | None:
    """(pid, start time) of a claim made on this host; None if unreadable, absent or remote."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname() or not info.get("pid"):
        return None
    return int(info["pid"]), info.get("start")


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a reused pid apart), or None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _alive(owner: tuple[int, str | None]) -> bool:
    """The claiming process still runs: not gone, not a zombie, not a reused pid."""
    pid, start = owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the pid exists
    if state in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    return start is None or _process_start(pid) == start


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
