"""The report package keeps its layout: the leaderboard has exactly its declared columns, section
titles and cross-references carry no hand-written numbers (the document numbers them when it is
built), and a reference to a section that does not exist is an error, not a silent "section ?".
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from scipy import stats as sps

try:  # the sweep builder lives with the report's unit tests
    from test_report import make_records, write_sweep
except ImportError:  # tests/ imported as a package
    from tests.test_report import make_records, write_sweep

from ptft_bench.records.record import RunRecord
from ptft_bench.report import build
from ptft_bench.report.aggregate import AVERAGED_COST_FIELDS
from ptft_bench.report.columns import LEADERBOARD, LEADERBOARD_COLUMNS, OPTIONAL
from ptft_bench.report.render.document import (
    Bullets,
    Cell,
    Document,
    Figure,
    Paragraph,
    Section,
    SectionReferenceError,
    Table,
    ref,
)
from ptft_bench.report.write import build_document

SECTIONS = Path(__file__).resolve().parents[1] / "ptft_bench" / "report" / "sections"
READING_ORDER = [
    "answer",
    "setup",
    "leaderboards",
    "across_tasks",
    "figures",
    "did_not_learn",
    "failures",
    "cost",
]


@pytest.fixture(scope="module")
def unit_data(tmp_path_factory):
    """The synthetic sweep of test_report (2 models x 2 tasks x 4 variants, no predictions)."""
    shards = write_sweep(tmp_path_factory.mktemp("layout"), make_records())
    return build(shards)


# ---- the leaderboard's column schema -------------------------------------------------------------


def test_leaderboard_has_exactly_the_declared_columns(unit_data):
    columns = list(unit_data.leaderboard.columns)
    assert len(columns) == len(set(columns))
    undeclared = sorted(set(columns) - set(LEADERBOARD))
    missing = sorted(set(LEADERBOARD) - set(columns))
    assert undeclared == [] and missing == []
    assert len(LEADERBOARD) == len(LEADERBOARD_COLUMNS)  # no column declared twice
    assert all(c.meaning for c in LEADERBOARD_COLUMNS)


def test_a_leaderboard_without_results_lacks_only_the_optional_columns(tmp_path):
    records = make_records(seeds=(0,))
    for r in records:
        r.update(status="failed", error="boom", metrics={}, history=None)
    lb = build(write_sweep(tmp_path, records), statistics=False).leaderboard
    assert set(lb.columns) == set(LEADERBOARD) - OPTIONAL


def test_cost_columns_are_declared_in_the_records_units():
    units = {f.name: f.metadata.get("unit") for f in dataclasses.fields(RunRecord)}
    assert set(AVERAGED_COST_FIELDS) <= set(LEADERBOARD)
    wrong = {
        name: (LEADERBOARD[name].unit, units[name])
        for name in AVERAGED_COST_FIELDS
        if name in units and LEADERBOARD[name].unit != units[name]
    }
    assert wrong == {}


# ---- section numbers -------------------------------------------------------------------------------

HAND_NUMBERED = (
    re.compile(r"Section\(\s*f?[\"']\d"),  # Section("3. Per-task ...")
    re.compile(r"\bsections? \d", re.IGNORECASE),  # "(see section 6)", "Section 8: ..."
    re.compile(r"[\"']\d+\.\s+[A-Z]"),  # TITLE = "1. Answer"
)


def test_no_section_file_writes_a_section_number():
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(SECTIONS.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if any(p.search(line) for p in HAND_NUMBERED)
    ]
    assert found == []


def test_sections_are_numbered_in_reading_order(unit_data):
    doc = build_document(unit_data, {})
    top = [s for s in doc.sections if s.level == 2]
    assert [s.key for s in top] == READING_ORDER
    assert [s.title.split(". ")[0] for s in top] == [str(i) for i in range(1, len(top) + 1)]
    assert all(not re.match(r"\d", s.title) for s in doc.sections if s.level == 3)
    texts = [b.text for s in doc.sections for b in s.blocks if isinstance(b, Paragraph)]
    assert not any("{§" in t for t in texts)


def test_numbering_resolves_references_everywhere():
    doc = Document(
        "report",
        [
            Section("First", [Paragraph("see {§second}")], key="first"),
            Section("Sub", [Bullets(["in {§first}"])], level=3),
            Section(
                "Second",
                [
                    Table(
                        ["col {§first}"],
                        [[Cell("cell {§second}", 1.0)]],
                        caption="cap {§first}",
                        note="note {§second}",
                    ),
                    Figure(Path("figures/x.png"), f"figure, {ref('first')}"),
                ],
                key="second",
            ),
        ],
    )
    out = doc.numbered()
    assert [s.title for s in out.sections] == ["1. First", "Sub", "2. Second"]
    assert out.sections[0].blocks[0].text == "see section 2"
    assert out.sections[1].blocks[0].items == ["in section 1"]
    table, figure = out.sections[2].blocks
    assert table.columns == ["col section 1"] and table.rows[0][0].text == "cell section 2"
    assert table.rows[0][0].sort == 1.0
    assert (table.caption, table.note) == ("cap section 1", "note section 2")
    assert figure.caption == "figure, section 1"
    assert doc.sections[0].title == "First"  # the original is left as it was


def test_a_reference_to_an_unknown_section_is_an_error():
    doc = Document("report", [Section("Only", [Paragraph("see {§nowhere}")], key="only")])
    with pytest.raises(SectionReferenceError, match="nowhere"):
        doc.numbered()
    twice = Document("report", [Section("A", key="a"), Section("B", key="a")])
    with pytest.raises(SectionReferenceError, match="two sections"):
        twice.numbered()


# ---- statistics come from the evidence, not from the sections ----------------------------------------


def test_the_seed_paired_fallback_is_part_of_the_evidence(unit_data):
    """Without predictions, Δ vs full falls back to a paired t-test over seeds, computed in
    `evidence` (checked here against scipy on the records' seed scores)."""
    lb = unit_data.leaderboard
    ev = unit_data.evidence.task("stsb", "base")
    assert ev.reference == "full" and set(ev.seed_tests) == set(ev.eligible)
    rows = {
        r["variant"]: r for _, r in lb[(lb["task"] == "stsb") & (lb["model"] == "base")].iterrows()
    }
    a, b = rows["bitfit"]["seed_scores"], rows["full"]["seed_scores"]
    seeds = sorted(set(a) & set(b), key=str)
    expected = sps.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    got = ev.seed_tests["bitfit"]
    assert got.n_pairs == len(seeds) == 3
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert got.t_stat == pytest.approx(expected.statistic, rel=1e-12)
