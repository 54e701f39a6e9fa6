"""Tasks: the nine GLUE tasks, the embedded movie-review tasks and custom file tasks.

Public API::

    from ptft_bench.tasks import load_task, list_tasks, get_spec, custom_task, TaskSpec, TaskData

    task = load_task("rte", data_dir="glue_data", max_train_samples=1000)
    task.train, task.validation, task.test   # DataFrames: text_a, [text_b], label

See ``ptft_bench.tasks.load`` for the split sizes and ``ptft_bench.tasks.metrics`` for the metrics.
"""

from ptft_bench.tasks.custom import custom_task
from ptft_bench.tasks.load import SOURCES, load_task, resolve_spec
from ptft_bench.tasks.metrics import compute_metrics
from ptft_bench.tasks.spec import TaskData, TaskSpec, get_spec, list_tasks

__all__ = [
    "SOURCES",
    "TaskData",
    "TaskSpec",
    "compute_metrics",
    "custom_task",
    "get_spec",
    "list_tasks",
    "load_task",
    "resolve_spec",
]
