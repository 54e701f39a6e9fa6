"""The example generations: for each generation task (and model), a few fixed test inputs (the
first `N_EXAMPLES` in the test split's order, the order the runs decoded them in) with their
references and what the best and the worst variant wrote, by mean test score of the task's
primary metric (BLEU), read from the runs' stored texts (`record.predictions["texts"]`, the
variant's first selected seed). The section exists only when the report has generation runs.

The prompts and references are not in the records: they are read again from the task
(`ptft_bench.tasks.load_task` with the run's data settings) and checked input by input against
what the run scored (`task_inputs`); where the task cannot be read (a moved file, a relative
path read from another folder, no data folder) or is not the same, the texts are shown without
them, and the reason is said.

Generated text is untrusted: every text is shown as one code span (`literal`), which both
renderings show verbatim (the HTML one escapes it), with the few sequences the document model
would read as markup neutralised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.report.load import run_predictions, run_texts
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Bullets, Paragraph, Section
from ptft_bench.tasks import generation_metrics as G
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS

N_EXAMPLES = 3
MAX_CHARS = 400
ZERO_WIDTH = "\u200b"
INTRO = (
    "What the variants write: the first {n} test inputs of each generation task (in the test "
    "split's order, the same for every variant), their references, and the texts of the best "
    "and the worst variant by mean test {metric} (their first selected seed; greedy decoding). "
    "Texts are shown verbatim, whitespace collapsed."
)


def literal(text: Any) -> str:
    """``text`` as one inline code span that both renderings show verbatim: whitespace runs
    (new lines included) collapsed, cut to `MAX_CHARS`, backticks written as ˋ (a code span
    cannot hold its own delimiter), and a zero-width space inside ``**`` and ``{§`` so that
    neither the bold markup nor a section reference is read in it; "(empty)" for no text."""
    flat = " ".join(str(text).split())
    if not flat:
        return "(empty)"
    if len(flat) > MAX_CHARS:
        flat = flat[: MAX_CHARS - 1] + "…"
    flat = flat.replace("`", "ˋ").replace("**", f"*{ZERO_WIDTH}*").replace("{§", f"{{{ZERO_WIDTH}§")
    return f"`{flat}`"


def floor_text(baseline: dict[str, Any]) -> str:
    """How a record's floor reads beside its scores: "majority class (always `1`)", "mean
    prediction (always `0.5`)" or, for generation, "constant output (always `The Eagle ...`)"."""
    kind, value = baseline.get("kind"), baseline.get("value")
    if kind == "constant output":
        return f"constant output (always {literal(value)})" if value is not None else str(kind)
    name = "majority class" if kind == "majority" else "mean prediction"
    return name + (f" (always `{value:g}`)" if isinstance(value, int | float) else "")


def generation_rows(lb: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows of generation tasks with a test score."""
    if lb.empty or "primary_metric" not in lb:
        return lb.iloc[0:0]
    return lb[lb["primary_metric"].isin(GENERATION_METRICS) & lb["test_mean"].notna()]


def generations_sections(lb: pd.DataFrame) -> list[Section]:
    """The section and one subsection per generation task and model; [] without generation
    runs."""
    rows = generation_rows(lb)
    if rows.empty:
        return []
    metric = str(rows["primary_metric"].iloc[0])
    sec = Section("Example generations", key="generations")
    sec.blocks.append(Paragraph(INTRO.format(n=N_EXAMPLES, metric=metric)))
    subs = [task_examples(str(t), str(m), g) for (m, t), g in rows.groupby(["model", "task"])]
    return [sec, *subs]


@dataclass(frozen=True)
class Pick:
    """A variant shown: why ("best", "worst"), its leaderboard row, the seed whose texts are
    shown and those test texts (or why there are none)."""

    role: str
    row: pd.Series
    seed: Any
    record: Any
    source: str
    texts: list[str] | str


def picks_of(g: pd.DataFrame) -> list[Pick]:
    """The best and the worst variant of one (task, model) by mean test score (ties: variant
    name), one pick when the task has a single variant."""
    ordered = g.sort_values(["test_mean", "variant"], ascending=[False, True], kind="stable")
    roles = [("only variant", 0)] if len(ordered) == 1 else [("best", 0), ("worst", -1)]
    return [_pick(role, ordered.iloc[i]) for role, i in roles]


def _pick(role: str, row: pd.Series) -> Pick:
    """The row's first selected run with test texts."""
    why = "no selected run"
    for seed, record, source in row["selected_runs"]:
        texts = run_texts(record, str(source))
        if isinstance(texts, dict) and isinstance(texts.get("test"), list):
            return Pick(role, row, seed, record, str(source), texts["test"])
        why = texts if isinstance(texts, str) else "no test texts recorded"
    return Pick(role, row, None, None, "", why)


def task_examples(task: str, model: str, g: pd.DataFrame) -> Section:
    """The subsection of one (task, model): the floor's text, then each example input."""
    sec = Section(f"{task} · model `{model}`", level=3)
    picks = picks_of(g)
    shown = [p for p in picks if isinstance(p.texts, list)]
    n = len(shown[0].texts) if shown else 0
    inputs = task_inputs(shown[0]) if shown else "no texts"
    base = next((b for b in g["baseline"] if isinstance(b, dict) and b.get("kind")), None)
    if base:
        sec.blocks.append(Paragraph(f"**Floor**: {floor_text(base)}."))
    if shown and isinstance(inputs, str):
        sec.blocks.append(Paragraph(f"Inputs and references not shown: {inputs}."))
    for p in picks:
        if isinstance(p.texts, str):
            sec.blocks.append(Paragraph(f"`{p.row['variant']}` ({p.role}): no texts: {p.texts}."))
    sec.blocks += [_example(i, n, inputs, shown) for i in range(min(N_EXAMPLES, n))]
    return sec


def _example(i: int, n: int, inputs: Any, picks: list[Pick]) -> Bullets:
    """One test input: its prompt and references (when known) and each pick's text."""
    items = [f"**Test input {i + 1} of {n}**"]
    if not isinstance(inputs, str):
        prompts, refs = inputs
        items[0] += f": {literal(prompts[i])}"
        items.append("References: " + " · ".join(literal(r) for r in refs[i]))
    for p in picks:
        if i < len(p.texts):
            r = p.row
            who = f"{p.role.capitalize()}: `{r['variant']}` ({r['primary_metric']} "
            who += fmt.mean_std(r["test_mean"], r["test_std"])
            who += ", did not learn" if r["did_not_learn"] else ""
            items.append(f"{who}; seed {p.seed}): {literal(p.texts[i])}")
    return Bullets(items)


def task_inputs(pick: Pick) -> tuple[list[str], list[list[str]]] | str:
    """(prompts, references) of the test inputs of the pick's run, read again from the task with
    the run's data settings, or why they cannot be shown: unreadable, or not the inputs the run
    scored (checked input by input: the BLEU statistics of its texts against the references read
    again, which hold each input's reference lengths, equal the stored ones)."""
    record = pick.record
    data = record.data if isinstance(record.data, dict) else {}
    got = _task_test(
        str(record.task),
        data.get("data_dir"),
        data.get("max_train_samples"),
        data.get("max_eval_samples"),
    )
    if isinstance(got, str):
        return got
    prompts, refs = got
    if len(prompts) != len(pick.texts):
        n = len(pick.texts)
        return f"the task's test split now has {len(prompts)} inputs, the run decoded {n}"
    stored = run_predictions(record, pick.source, "test", "bleu")
    if isinstance(stored, str):
        return stored
    again = G.example_stats(pick.texts, refs, ["bleu"])["bleu"]
    if stored[0].shape != again.shape or not np.allclose(stored[0], again):
        return "the task's test inputs read again are not the ones the run scored (changed data?)"
    return prompts, refs


def _task_test(task: str, data_dir, max_train, max_eval) -> tuple[list, list] | str:
    from ptft_bench.tasks import load_task  # the task loaders only when a report shows texts

    try:
        test = load_task(
            task, data_dir=data_dir, max_train_samples=max_train, max_eval_samples=max_eval
        ).test
        prompts = [str(p) for p in test["prompt"]]
        refs = [[str(r) for r in rs] for rs in test["references"]]
    except Exception as exc:  # any failure to read the data only hides the inputs
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"the task could not be read again ({text[:200]})"
    return prompts, refs
