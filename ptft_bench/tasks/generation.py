"""Generation tasks: reading (prompt, target) pairs, splitting by input, grouping references.

The frames ``load_task`` returns for a generation task (``TaskSpec.kind == "generation"``):

- ``train``: one row per (prompt, target) training pair, columns ``prompt``, ``target`` (str);
- ``validation`` and ``test``: one row per distinct input, columns ``prompt`` (str),
  ``references`` (a Python list of str: every reference of that input, file order, duplicates
  dropped) and ``target`` (str, the first reference).

Row indices are the row numbers of the source file (for grouped inputs: of the input's first row),
so provenance can be checked. Exact duplicate (prompt, target) rows are dropped everywhere: a
duplicate reference changes no metric and would only double a pair's weight in training.

Splits (seeded by the *split* seed of ``load_task``, never the training seed, with the same
``SeedSequence([seed, crc32(task), purpose])`` scheme as ``ptft_bench.tasks.splits``):

- validation is held out **by input** (all rows of a prompt go to one side, never split by row):
  10% of the distinct prompts of the training file, at least 1, at most 1,000
  (``validation_inputs``); e2e: 55 of devset.csv's 547 MRs. A custom task without a test file
  holds its test inputs out first the same way (at most 5,000).
- ``max_train_samples`` caps training *pairs*, round-robin over inputs: inputs in a seeded order,
  each input's references in a seeded order, pair k of every input before pair k + 1 of any, so
  any cap >= the number of inputs keeps every input, and a smaller cap is a prefix (nested) of a
  larger one.
- ``max_eval_samples`` caps validation and test *inputs* (a seeded, nested prefix), each keeping
  all its references.

Built-in task ``e2e`` (E2E NLG Challenge, restaurant domain): ``devset.csv`` (train +
validation) and ``testset_w_refs.csv`` (test), columns ``mr,ref`` (standard CSV quoting: an MR
contains commas; CRLF line ends). The prompt is ``E2E_INSTRUCTION + "\\n" + mr`` with the MR as in
the file (``name[The Eagle], eatType[coffee shop], ...``); targets and MRs are stripped and their
whitespace runs collapsed (722 dev references contain double spaces).
Where it is looked for (``e2e_candidates``): with ``data_dir``, the folder itself (the e2e folder),
``data_dir/e2e`` (the shared data folder) and ``data_dir/../e2e`` (a sibling: ``--data-dir
../shared/data/glue`` for a suite mixing GLUE and E2E); without, ``$PTFT_SHARED_DATA/e2e``, else
``../shared/data/e2e`` relative to the current directory.
"""

from __future__ import annotations

import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.tasks import splits
from ptft_bench.tasks.spec import TaskData, TaskSpec

E2E_INSTRUCTION = "Write a one-sentence description of this restaurant from its attributes."
E2E_FILES = {"train": "devset.csv", "test": "testset_w_refs.csv"}
VALIDATION_FRACTION = 0.1
VALIDATION_MAX_INPUTS = 1000
TEST_MAX_INPUTS = 5000
REFERENCE_SEPARATOR = "\x1f"  # joins references for hashing (never inside a text)


def e2e_prompt(mr: str) -> str:
    """The prompt of one E2E input: the instruction, a new line, the MR string."""
    return f"{E2E_INSTRUCTION}\n{mr}"


def validation_inputs(n_inputs: int) -> int:
    """How many of the training file's distinct inputs become the validation split."""
    return max(1, min(VALIDATION_MAX_INPUTS, round(VALIDATION_FRACTION * n_inputs)))


def _rng(seed: int, task: str, purpose: str) -> np.random.Generator:
    # The seeding scheme of ptft_bench.tasks.splits (its helper is private to that module).
    ss = np.random.SeedSequence([seed, zlib.crc32(task.encode()), splits.PURPOSES[purpose]])
    return np.random.default_rng(ss)


# ---------------------------------------------------------------------------------------------
# Reading


def e2e_candidates(data_dir: str | os.PathLike | None) -> list[Path]:
    """The folders that may hold the E2E files, in the order they are tried."""
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()  # so that `parent` is the real one
        return [root, root / "e2e", root.parent / "e2e"]
    env = os.environ.get("PTFT_SHARED_DATA")
    base = Path(env).expanduser() if env else Path("..") / "shared" / "data"
    return [base / "e2e"]


def find_e2e_folder(data_dir: str | os.PathLike | None) -> Path:
    """The resolved folder holding devset.csv and testset_w_refs.csv, or one clear UserError."""
    candidates = e2e_candidates(data_dir)
    for folder in candidates:
        present = [f for f in E2E_FILES.values() if (folder / f).is_file()]
        if present and len(present) < len(E2E_FILES):
            missing = sorted(set(E2E_FILES.values()) - set(present))
            raise UserError(
                f"task e2e: {folder.resolve()} lacks {', '.join(missing)}: put both devset.csv "
                "and testset_w_refs.csv (tuetschek/e2e-dataset) there"
            )
        if present:
            return folder.resolve()
    looked = ", ".join(str(c.resolve()) for c in candidates)
    raise UserError(
        f"task e2e: no devset.csv / testset_w_refs.csv in {looked}: pass --data-dir pointing at "
        "the shared data folder that holds e2e/ (or at the e2e folder), or set PTFT_SHARED_DATA"
    )


def _collapse(values: pd.Series) -> pd.Series:
    return values.map(lambda s: " ".join(str(s).split()))


@lru_cache(maxsize=8)
def _read_e2e_file(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    # mtime and size are part of the cache key, so an edited file is read again.
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {path} as the E2E CSV (mr,ref): {first}") from None
    if list(raw.columns)[:2] != ["mr", "ref"]:
        raise UserError(f"{path}: expected the E2E columns mr,ref, found {list(raw.columns)}")
    mr = _collapse(raw["mr"])
    pairs = pd.DataFrame({"prompt": mr.map(e2e_prompt), "target": _collapse(raw["ref"])})
    return check_pairs(pairs, path, "mr", "ref")


def read_e2e(folder: Path) -> dict[str, pd.DataFrame]:
    """The E2E pairs: ``{"train": devset.csv, "test": testset_w_refs.csv}`` (prompt, target)."""
    out = {}
    for split, name in E2E_FILES.items():
        st = (folder / name).stat()
        out[split] = _read_e2e_file(str(folder / name), st.st_mtime_ns, st.st_size).copy()
    return out


def check_pairs(pairs: pd.DataFrame, where: str, prompt_col: str, target_col: str) -> pd.DataFrame:
    """Reject empty prompts / targets (naming the row); drop exact duplicate pairs."""
    for col, raw_name in (("prompt", prompt_col), ("target", target_col)):
        empty = (pairs[col].str.strip() == "").to_numpy()
        if empty.any():
            row = int(empty.argmax())
            raise UserError(
                f"{where}: row {row + 1} has an empty {col} (column {raw_name!r}): fill it in or "
                "drop the row"
            )
    return pairs[~pairs.duplicated(keep="first")]


def _cell(value: object) -> str:
    """A file cell as stripped text; missing values (empty CSV cell, JSON null) become ""."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def pairs_from_table(raw: pd.DataFrame, prompt_col: str, target_col: str, where: str):
    """A custom file's rows as (prompt, target) pairs, stripped and checked."""
    missing = [c for c in (prompt_col, target_col) if c not in raw.columns]
    if missing:
        raise UserError(
            f"{where}: column(s) {missing} not found; the file has columns {list(raw.columns)}: "
            "name the columns with gen:PATH?prompt=COLUMN&target=COLUMN"
        )
    text = {
        new: raw[col].map(_cell) for new, col in (("prompt", prompt_col), ("target", target_col))
    }
    return check_pairs(pd.DataFrame(text, index=raw.index), where, prompt_col, target_col)


# ---------------------------------------------------------------------------------------------
# Splitting, grouping, capping


def group_inputs(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct prompt (first-appearance order): prompt, references, target."""
    refs: dict[str, list[str]] = {}
    first: dict[str, object] = {}
    for idx, prompt, target in zip(pairs.index, pairs["prompt"], pairs["target"]):
        refs.setdefault(prompt, []).append(target)
        first.setdefault(prompt, idx)
    return pd.DataFrame(
        {
            "prompt": list(refs),
            "references": list(refs.values()),
            "target": [r[0] for r in refs.values()],
        },
        index=pd.Index(list(first.values())),
    )


def hold_out_inputs(pairs: pd.DataFrame, n: int, task: str, purpose: str, seed: int):
    """Split pairs by input: (rest pairs, the ``n`` held-out inputs grouped, in seeded order)."""
    inputs = pd.unique(pairs["prompt"])
    held = inputs[_rng(seed, task, purpose).permutation(len(inputs))[:n]]
    mask = pairs["prompt"].isin(set(held)).to_numpy()
    grouped = group_inputs(pairs[mask])
    rank = grouped["prompt"].map({p: i for i, p in enumerate(held)}).to_numpy()
    return pairs[~mask], grouped.iloc[np.argsort(rank, kind="stable")]


def round_robin(pairs: pd.DataFrame, n: int | None, task: str, seed: int) -> pd.DataFrame:
    """Training pairs in round-robin order over inputs (seeded), the first ``n`` of them."""
    rng = _rng(seed, task, "train")
    inputs = pd.unique(pairs["prompt"])
    position = dict(zip(inputs[rng.permutation(len(inputs))], range(len(inputs))))
    input_rank = pairs["prompt"].map(position).to_numpy()
    within = pd.Series(rng.random(len(pairs))).groupby(input_rank).rank(method="first")
    order = np.lexsort((input_rank, within.to_numpy()))
    return pairs.iloc[order[:n] if n is not None else order]


def cap_inputs(frame: pd.DataFrame, n: int | None, task: str, seed: int) -> pd.DataFrame:
    """At most ``n`` inputs: a seeded, nested prefix; all inputs when ``n`` is None or larger."""
    if n is None or n >= len(frame):
        return frame
    return frame.iloc[np.sort(_rng(seed, task, "eval_cap").permutation(len(frame))[:n])]


def fingerprint(name: str, source: str, frames: dict[str, pd.DataFrame]) -> str:
    """``splits.fingerprint`` with each reference list joined into one hashable string."""
    flat = {
        k: df.assign(references=df["references"].map(REFERENCE_SEPARATOR.join))
        if "references" in df
        else df
        for k, df in frames.items()
    }
    return splits.fingerprint(name, source, flat)


def _need(n: int, minimum: int, what: str, spec: TaskSpec, where: str) -> None:
    if n < minimum:
        raise UserError(
            f"task {spec.name}: {what} in {where} has {n} distinct prompt(s), at least {minimum} "
            "needed: add rows with other prompts"
        )


def build_task_data(
    spec: TaskSpec,
    frames: dict[str, pd.DataFrame],
    source: str,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
) -> TaskData:
    """Split, group and cap raw (prompt, target) pairs into a generation task's TaskData.

    ``frames`` holds pair frames: ``"train"`` and ``"test"``, or ``"all"`` alone (test inputs are
    then held out of it first).
    """
    if "all" in frames:
        full = frames["all"]
        _need(full["prompt"].nunique(), 3, "the file", spec, source)
        n_test = min(validation_inputs(full["prompt"].nunique()), TEST_MAX_INPUTS)
        train_pairs, test = hold_out_inputs(full, n_test, spec.name, "test", seed)
    else:
        train_pairs, test = frames["train"], group_inputs(frames["test"])
        _need(train_pairs["prompt"].nunique(), 2, "the training file", spec, source)
        _need(len(test), 1, "the test file", spec, source)
    n_val = validation_inputs(train_pairs["prompt"].nunique())
    train_pairs, validation = hold_out_inputs(train_pairs, n_val, spec.name, "validation", seed)
    out = {
        "train": round_robin(train_pairs, max_train_samples, spec.name, seed),
        "validation": cap_inputs(validation, max_eval_samples, spec.name, seed),
        "test": cap_inputs(test, max_eval_samples, spec.name, seed),
    }
    return TaskData(
        spec=spec,
        **out,
        source=source,
        fingerprint=fingerprint(spec.name, source, out),
    )
