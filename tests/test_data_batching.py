"""Length-grouped batching, per-batch padding and the tokenisation cache."""

import numpy as np
import pandas as pd
import pytest

from ptft_bench.tasks import encode as D


@pytest.mark.parametrize("n,bs", [(1, 4), (97, 8), (1000, 32)])
def test_every_example_exactly_once_per_epoch(n, bs):
    lengths = np.random.default_rng(0).integers(3, 120, size=n)
    for epoch in range(3):
        batches = D.length_grouped_batches(lengths, bs, seed=1, epoch=epoch)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(n))
        assert all(1 <= len(b) <= bs for b in batches)


def test_batches_are_shuffled_across_epochs_and_deterministic():
    lengths = np.random.default_rng(0).integers(3, 120, size=500)
    a = D.length_grouped_batches(lengths, 16, seed=1, epoch=0)
    b = D.length_grouped_batches(lengths, 16, seed=1, epoch=0)
    c = D.length_grouped_batches(lengths, 16, seed=1, epoch=1)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))


def test_grouping_reduces_padding():
    lengths = np.random.default_rng(0).integers(3, 120, size=2000)
    grouped = D.length_grouped_batches(lengths, 32, seed=0, epoch=0)
    plain = D.random_batches(len(lengths), 32, seed=0, epoch=0)
    assert D.padding_share(lengths, grouped) < 0.5 * D.padding_share(lengths, plain)


def test_padding_share_by_hand():
    lengths = np.array([2, 4, 3, 3])
    # batches [0,1] -> width 4, 8 positions, 6 real; [2,3] -> width 3, 6 positions, 6 real
    assert D.padding_share(lengths, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(2 / 14)


def test_collate_pads_to_longest_in_batch():
    split = D.EncodedSplit(
        [np.array([101, 5, 102]), np.array([101, 102]), np.array([101, 7, 8, 9, 102])],
        None,
        np.array([1, 0, 1]),
    )
    batch = D.collate(split, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_ids"][1].tolist() == [101, 102, 0]
    assert batch["labels"].tolist() == [1, 0]


def test_encode_frame_pairs_and_truncation():
    from ptft_bench.models.load import load_tokenizer
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    tok = load_tokenizer("minilm-l6")
    frame = pd.DataFrame({"text_a": ["a b c", "word " * 50], "text_b": ["d", "e"], "label": [0, 1]})
    enc = D.encode_frame(frame, tok, max_length=16)
    assert len(enc) == 2 and enc.lengths.max() <= 16
    assert enc.token_type_ids is not None and enc.token_type_ids[0].max() == 1
