"""Cost meters: parameter counts, checkpoint size, peak memory, and the FLOPs formula by hand."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from ptft_bench import cost
from ptft_bench.model_parts import find_parts


def tiny_bert(hidden=4, inter=8, layers=2, labels=2, vocab=10):
    cfg = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=1,
        intermediate_size=inter,
        max_position_embeddings=16,
        type_vocab_size=2,
        num_labels=labels,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg)


def test_param_counts_by_hand():
    m = tiny_bert()
    for n, p in m.named_parameters():
        p.requires_grad_(n.startswith("classifier") or n.startswith("bert.pooler"))
    c = cost.count_params(m)
    # head: pooler 4x4+4, classifier 4x2+2
    assert c.trainable == 20 + 10 == c.trainable_head
    assert c.total == sum(p.numel() for p in m.parameters())


def test_tied_weights_counted_once():
    m = tiny_bert()
    m.classifier.weight = torch.nn.Parameter(m.classifier.weight.detach().clone())
    lin = torch.nn.Linear(4, 10)
    lin.weight = m.bert.embeddings.word_embeddings.weight  # tie a (10, 4) matrix
    m.add_module("tied", lin)
    n_unique = sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
    assert cost.count_params(m).total == n_unique


def test_flops_formula_hand_checked():
    """Per layer: Q,K,V,O 4*16 + FFN 4*8*2 = 128 matmul params; head: pooler 16 + classifier 8."""
    m = tiny_bert()
    seq = 10
    attn = 4 * seq * 4  # 160 per layer and token
    fm = cost.flops_model(m)  # everything trainable
    assert fm.per_layer == [128, 128] and fm.head == 24 and fm.trainable_matmul == 280
    fwd = 2 * 24 + 2 * (2 * 128 + attn)
    bwd = 2 * 24 + 2 * (2 * 128 + 2 * attn) + 2 * 280
    assert cost.train_flops_per_token(fm, seq) == fwd + bwd == 880 + 1760

    for n, p in m.named_parameters():  # head only: no activation gradients through the blocks
        p.requires_grad_(n.startswith(("classifier", "bert.pooler")))
    fm = cost.flops_model(m)
    assert fm.lowest_trainable_layer == 3 and fm.trainable_matmul == 24
    assert cost.train_flops_per_token(fm, seq) == 880 + (2 * 24 + 2 * 24)
    # the blocks served from a cache cost nothing after the first pass
    assert cost.train_flops_per_token(fm, seq, first_cached_layer=2) == 2 * 24 + 96

    for n, p in m.named_parameters():  # top-1: gradients flow through the last block only
        p.requires_grad_(n.startswith(("classifier", "bert.pooler", "bert.encoder.layer.1.")))
    fm = cost.flops_model(m)
    assert fm.lowest_trainable_layer == 2
    bwd = 2 * 24 + (2 * 128 + 2 * attn) + 2 * (128 + 24)
    assert cost.train_flops_per_token(fm, seq) == 880 + bwd


def test_checkpoint_bytes_grow_with_state():
    small = cost.checkpoint_bytes({"a": torch.zeros(10)})
    big = cost.checkpoint_bytes({"a": torch.zeros(1000)})
    assert big - small == pytest.approx(990 * 4, abs=16)


def test_peak_memory_sees_an_allocation():
    import time

    from ptft_bench.execute import release_memory

    # Freed-but-resident heap from earlier tests could serve the allocation without the resident
    # set growing: hand it back to the OS first (as the sweep does between runs).
    release_memory()
    with cost.PeakMemory(torch.device("cpu"), interval=0.005) as mem:
        before = cost._rss_bytes()
        x = torch.empty(256 * 1024 * 1024 // 4)  # 256 MiB, every page touched below
        x.fill_(1.0)
        time.sleep(0.05)
        del x
    assert mem.peak >= before + 192 * 1024 * 1024


def test_cpu_peak_probe_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PTFT_CACHE", str(tmp_path))
    a = cost.cpu_peak_flops(size=128, repeats=2)
    assert a > 1e6
    assert cost.cpu_peak_flops(size=128, repeats=2) == a  # second call reads the cache


def test_flops_meter_follows_the_trainable_set_step_by_step():
    from ptft_bench.callbacks import TrainState

    m = tiny_bert()
    for n, p in m.named_parameters():
        p.requires_grad_(n.startswith(("classifier", "bert.pooler")))
    meter = cost.FlopsMeter(cost.flops_model(m), find_parts(m))
    st = TrainState(m, None, batch_positions=100, batch_width=10)
    meter.on_step_end(st)
    assert meter.total == 100 * (880 + 96)  # head only: see the hand-checked case above
    for n, p in m.named_parameters():  # a callback unfreezes the last block
        if n.startswith("bert.encoder.layer.1."):
            p.requires_grad_(True)
    meter.on_step_end(st)
    attn = 4 * 10 * 4
    top1 = 880 + 2 * 24 + (2 * 128 + 2 * attn) + 2 * (128 + 24)
    assert meter.total == 100 * (880 + 96) + 100 * top1
