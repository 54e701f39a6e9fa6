"""Tasks: the nine GLUE tasks, the embedded movie-review tasks, the E2E generation task and
custom file tasks (classification, regression or generation).

Public API::

    from ptft_bench.tasks import load_task, list_tasks, get_spec, custom_task, TaskSpec, TaskData

    task = load_task("rte", data_dir="glue_data", max_train_samples=1000)
    task.train, task.validation, task.test   # DataFrames: text_a, [text_b], label

    gen = load_task("e2e", data_dir="../shared/data")   # spec.kind == "generation"
    gen.train                  # prompt, target: one row per training pair
    gen.validation, gen.test   # prompt, references (list of str), target: one row per input

See ``ptft_bench.tasks.load`` for the split sizes, ``ptft_bench.tasks.metrics`` for the label
metrics, ``ptft_bench.tasks.generation`` for generation data and
``ptft_bench.tasks.generation_metrics`` for BLEU / chrF / ROUGE-L / exact match.
"""

from ptft_bench.tasks.custom import custom_generation_task, custom_task
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS
from ptft_bench.tasks.load import SOURCES, load_task, resolve_spec
from ptft_bench.tasks.metrics import compute_metrics
from ptft_bench.tasks.spec import TaskData, TaskSpec, get_spec, list_tasks

__all__ = [
    "GENERATION_METRICS",
    "SOURCES",
    "TaskData",
    "TaskSpec",
    "compute_metrics",
    "custom_generation_task",
    "custom_task",
    "get_spec",
    "list_tasks",
    "load_task",
    "resolve_spec",
]
