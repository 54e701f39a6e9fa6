"""Atomic writes: a file (or folder) is written whole or not at all.

Every writer in the project goes through here: run records, predictions, plans, reports,
tokenisation caches, pretraining outputs and checkpoints. The content goes to a temporary name in
the same folder (same file system, so the rename is atomic), is flushed to disk, and is renamed
over the final name; a crash leaves either the old file, the new file, or a stray temporary
(`.NAME.*.tmp`, which `RunStore.clean_temporaries` removes), never half a file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _write_via(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, fsync it, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return _write_via(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> Path:
    return _write_via(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file.

    numpy / torch scalars become Python numbers; tuples become lists; keys become strings.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return json_safe(obj.item())
    return obj


def write_json(path: Path, obj: Any, indent: int = 1, sort_keys: bool = True) -> Path:
    """JSON with NaN/inf as null (`json_safe`); `sort_keys=False` keeps the caller's order."""
    text = json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return write_text(path, text)


def save_torch(path: Path, obj: Any) -> Path:
    import torch

    def save(tmp: Path) -> None:
        # Through a file object: given a path, torch.save names the archive after the file,
        # which would put the random temporary name into the bytes.
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return _write_via(path, save)


def save_with(path: Path, save: Callable[[str], None]) -> Path:
    """For libraries that write to a path themselves (safetensors' `save_file`, numpy)."""
    return _write_via(path, lambda tmp: save(str(tmp)))


def replace_dir(tmp: Path, final: Path) -> Path:
    """Move a fully written temporary folder to `final`, replacing an older one."""
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
