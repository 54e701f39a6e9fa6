"""The answer is short and the leaderboards are narrow, on reports built from the test fixtures:

- every markdown table of the answer and of the per-task leaderboards has at most 10 columns
  (the leaderboards' other columns are in summary.csv and folded under each table in the HTML);
- the answer has one table per model, at most 12 rows: every budget's pick and the variants no
  other beats on score and every budgeted cost at once (checked against a hand computation of
  dominance), the non-dominated variants beyond 12 named below it;
- its verdict sentence names the pick without a limit and the cheapest variant tied with it;
- its serving and "works with" cells are what the strategy classes declare.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

try:  # the record builders live with the report's other tests
    from test_report import make_records
    from test_report import write_sweep as write_unit_sweep
    from test_report_verdicts import VARIANTS, _record, classification_preds, write_sweep
except ImportError:  # tests/ imported as a package
    from tests.test_report import make_records
    from tests.test_report import write_sweep as write_unit_sweep
    from tests.test_report_verdicts import VARIANTS, _record, classification_preds, write_sweep

from ptft_bench.records.record import RunRecord
from ptft_bench.records.store import RunStore
from ptft_bench.report import build, write_report
from ptft_bench.report.recommend import MAX_CHOICES, recommendations
from ptft_bench.strategy.registry import strategy_class

MAX_COLUMNS = 10
MANY = 15  # variants of the "many" sweep, each cheaper and worse than the one before


def section(md: str, title: str) -> str:
    """The text of the level-2 section whose title starts with ``title`` (subsections too)."""
    start = re.search(rf"^## \d+\. {re.escape(title)}.*$", md, re.M)
    assert start, f"no section {title}"
    rest = md[start.end() :]
    end = re.search(r"^## \d+\. ", rest, re.M)
    return rest[: end.start()] if end else rest


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table: (header cells, rows of cells); cells split on unescaped pipes."""
    out, lines = [], text.splitlines()

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            assert lines[i + 1].count("---") == len(cells(line))
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            out.append((cells(line), rows))
    return out


def answer_tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """The answer's per-model tables (not the folded per-budget ones)."""
    return [t for t in tables(section(md, "Answer")) if t[0][:2] == ["variant", "pick under"]]


def _many_sweep(out: Path) -> None:
    """One task, `MANY` variants: variant k misses 100 + 25k examples (nested: each misses what
    the previous one misses, and 25 more) and costs less on every axis than variant k - 1, so
    none dominates another and no two are tied. The last one's strategy is unknown here."""
    store = RunStore(out)
    preds, labels = classification_preds("alpha", 0)
    order = np.random.default_rng(3).permutation(len(labels))
    for k in range(MANY):
        p = labels.copy()
        p[order[: 100 + 25 * k]] = 1 - labels[order[: 100 + 25 * k]]
        raw = _record("alpha", "full", 0, p, labels)
        raw.update(
            run_id=f"alpha-v{k:02d}-s0",
            variant=f"v{k:02d}",
            strategy="lora" if k < MANY - 1 else "not_registered",
            strategy_params={"r": 64 - 4 * k},
            trainable_params=int(10_000_000 * 0.6**k),
            train_seconds=100.0 * 0.9**k,
            peak_memory_bytes=int(2**31 * 0.95**k),
        )
        split = {"pred": p, "label": labels}
        store.write(RunRecord.from_dict(raw), predictions={"test": split, "validation": split})


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """report.md (and paths) of three fixture sweeps: the unit sweep (two models, old records
    without predictions), the verdicts sweep (ties, a collapse, a regression task), `MANY`."""
    root = tmp_path_factory.mktemp("answer")
    out = {}
    shards = write_unit_sweep(root / "unit", make_records())
    out["unit"] = write_report(shards, root / "unit-report")
    write_sweep(root / "verdicts", ("alpha", "delta"), (0,))
    out["verdicts"] = write_report([root / "verdicts"], root / "verdicts-report")
    _many_sweep(root / "many")
    out["many"] = write_report([root / "many"], root / "many-report")
    out["runs"] = {"unit": shards, "verdicts": [root / "verdicts"], "many": [root / "many"]}
    return out


@pytest.mark.parametrize("name", ["unit", "verdicts", "many"])
def test_answer_and_leaderboard_tables_have_at_most_10_columns(reports, name):
    md = reports[name]["md"].read_text()
    found = tables(section(md, "Answer")) + tables(section(md, "Per-task leaderboards"))
    assert len(found) >= 3
    wide = [(len(header), header) for header, _ in found if len(header) > MAX_COLUMNS]
    assert wide == []
    # The leaderboards' other columns: in summary.csv, and folded in the HTML (never in the md).
    csv_header = reports[name]["csv"].read_text().splitlines()[0].split(",")
    for column in ("gap_to_full_p_holm", "mcnemar_p_vs_full", "checkpoint_bytes", "n_runs_ok"):
        assert column in csv_header
    assert "p vs full (Holm)" not in md and "McNemar p vs full" not in md
    html = reports[name]["html"].read_text()
    folded = re.findall(r"<details><summary>Every column.*?</details>", html, re.S)
    boards = section(md, "Per-task leaderboards").count("\n### ")
    assert len(folded) == boards and all("p vs full (Holm)" in f for f in folded)
    assert "http://" not in html and "https://" not in html


def test_one_answer_table_per_model_and_the_verdict_first(reports):
    md = reports["unit"]["md"].read_text()
    answer = section(md, "Answer")
    assert [t[0][0] for t in answer_tables(md)] == ["variant", "variant"]
    assert answer.index("*Model `base`, over") < answer.index("*Model `domain`, over")
    first = answer.strip().splitlines()[0]
    assert first.startswith("Model `base`: **use `")
    # Schema-1 records carry no predictions: ties unknown, said in the rows.
    assert "some ties unknown (predictions missing)" in answer


def test_at_most_12_rows_every_pick_kept_and_the_rest_named(reports):
    md = reports["many"]["md"].read_text()
    ((header, rows),) = answer_tables(md)
    assert len(rows) == MAX_CHOICES < MANY
    data = build(reports["runs"]["many"])
    picks = {r.variant for r in recommendations(data.leaderboard, data.evidence) if r.variant}
    shown = {row[0].strip("*`") for row in rows}
    assert picks <= shown
    left = sorted({f"v{k:02d}" for k in range(MANY)} - shown)
    assert len(left) == MANY - MAX_CHOICES
    named = re.search(r"Also not dominated, left out for space: (.*?) \(", md).group(1)
    assert named.split(", ") == [f"`{v}`" for v in left]  # by score, best first
    # Nothing is tied: the verdict says so; the strategy this installation lacks has dashes.
    assert "**Use `v00`** (" in md and "no other variant is as good within the interval" in md
    last = next((row for row in rows if row[0].strip("*`") == f"v{MANY - 1:02d}"), None)
    if last is not None:
        assert last[header.index("works with")] == "—"


def _dominated(v: str, costs: dict) -> bool:
    """By hand: another variant scores at least as high and costs no more on every axis,
    strictly better somewhere (score, parameters, time, memory, latency)."""
    mine = costs[v]
    return any(
        all(o[i] <= mine[i] for i in range(1, 5))
        and o[0] >= mine[0]
        and (o[0] > mine[0] or any(o[i] < mine[i] for i in range(1, 5)))
        for w, o in costs.items()
        if w != v
    )


def test_the_rows_are_the_picks_and_the_non_dominated(reports):
    md = reports["verdicts"]["md"].read_text()
    ((header, rows),) = answer_tables(md)
    shown = {row[0].strip("*`"): row for row in rows}
    data = build(reports["runs"]["verdicts"])
    lb = data.leaderboard
    means = lb.groupby("variant")["test_mean"].mean()
    latency = {"lora(r=8)": 1.0, "lora(r=4)": 1.3, "linear_probe": 0.9}
    costs = {
        v: (means[v], trainable, secs, mem, latency.get(v, 1.0))
        for v, (_, _, trainable, secs, mem) in VARIANTS.items()
        if v != "head_only"  # collapsed: not a candidate
    }
    picks = {r.variant for r in recommendations(lb, data.evidence) if r.variant}
    expected = {v for v in costs if v in picks or not _dominated(v, costs)}
    assert set(shown) == expected
    assert "bitfit" not in shown and "head_only" not in shown  # the probe beats bitfit for less
    for v, row in shown.items():  # bold: the budgets' picks, each listing where it is picked
        assert row[0].startswith("**") == (v in picks)
        assert (row[header.index("pick under")] != "—") == (v in picks)


def test_the_verdict_names_the_pick_and_the_cheapest_tied_variant(reports):
    md = reports["verdicts"]["md"].read_text()
    data = build(reports["runs"]["verdicts"])
    top = next(r for r in recommendations(data.leaderboard, data.evidence) if r.kind == "")
    assert top.variant in ("full", "lora(r=8)") and "lora(r=4)" in top.tied
    verdict = section(md, "Answer").strip().splitlines()[0]
    assert verdict.startswith(f"**Use `{top.variant}`** (")
    # lora(r=4) trains fewer parameters, for less time, than either of the two others
    assert "; `lora(r=4)` is as good within the interval (" in verdict
    assert "0.3% of the parameters" in verdict and "the train time" in verdict
    assert "merge into the base model (no serving overhead once merged)" in verdict


def test_serving_and_works_with_come_from_the_strategy_classes(reports):
    md = reports["verdicts"]["md"].read_text()
    ((header, rows),) = answer_tables(md)
    strategies = {v: s for v, (s, *_) in VARIANTS.items()}
    for row in rows:
        caps = strategy_class(strategies[row[0].strip("*`")]).capabilities()
        serving = row[header.index("serving (latency × base)")]
        assert serving.endswith({"merges": "mergeable"}.get(caps["serving"], caps["serving"]))
        works = row[header.index("works with")]
        assert ("quantized base" in works) == caps["quantized_base"]
        assert ("shared base" in works) == caps["multi_adapter"]
        assert ("decoders" in works) == bool(caps["decoders"])
    assert "works with" in header and len(header) <= MAX_COLUMNS
