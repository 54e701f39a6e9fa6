"""Cost meters: parameter counts, checkpoint size, peak memory, and the FLOPs formula by hand."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from ptft_bench.cost import flops
from ptft_bench.cost import meters as cost
from ptft_bench.models.parts import find_parts


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
    """Per layer: Q,K,V,O 4*16 + FFN 4*8*2 = 128 matmul params; head: pooler 16 + classifier 8.

    Per sequence of 10 tokens and block, attention scores cost 4*10*10*4 = 1600 forward and 800
    per backward matmul (dQ, dK, dP, dV). The head reads one position: it runs once per sequence.
    """
    m = tiny_bert()
    seq, attn = 10, 1600
    fm = flops.flops_model(m)  # everything trainable: every input needs a gradient
    assert fm.per_layer == [128, 128] and fm.head.fwd == 24
    assert [(s.dx, s.dw, s.attention_bwd) for s in fm.stages[1:]] == [(128, 128, 4)] * 2
    block = 2 * seq * (128 + 128 + 128) + attn + 4 * 800
    head = 2 * (24 + 24 + 24)
    assert flops.train_flops_per_step(fm, 1, seq) == 2 * block + head == 25104
    assert flops.train_flops_per_token(fm, seq) == 2510.4

    for n, p in m.named_parameters():  # head only: no activation gradients through the blocks
        p.requires_grad_(n.startswith(("classifier", "bert.pooler")))
    fm = flops.flops_model(m)
    assert [(s.dx, s.dw, s.attention_bwd) for s in fm.stages[1:]] == [(0, 0, 0)] * 2
    frozen = 2 * seq * 128 + attn  # a forward pass only
    head = 2 * (24 + 8 + 24)  # the pooler's input needs no gradient, the classifier's does
    assert flops.train_flops_per_step(fm, 1, seq) == 2 * frozen + head == 8432
    # the blocks served from a cache cost nothing after the first pass
    assert flops.train_flops_per_step(fm, 1, seq, first_cached_layer=2) == head
    assert flops.prefix_forward_flops(fm, seq, 2) * seq == 2 * frozen

    for n, p in m.named_parameters():  # top-1: gradients flow through the last block only
        p.requires_grad_(n.startswith(("classifier", "bert.pooler", "bert.encoder.layer.1.")))
    fm = flops.flops_model(m)
    # the bottom trainable block's q/k/v projections read a frozen input: weight gradients only
    assert (fm.stages[2].dx, fm.stages[2].dw) == (128 - 3 * 16, 128)
    top = 2 * seq * (128 + 80 + 128) + attn + 4 * 800
    head = 2 * (24 + 24 + 24)
    assert flops.train_flops_per_step(fm, 1, seq) == frozen + top + head == 15824


def test_flops_prompt_methods_hand_checked():
    """Virtual tokens: prompt tuning lengthens every block's sequence, prefix tuning the keys."""
    from ptft_bench.strategy.registry import get_strategy

    seq = 10
    m = get_strategy("prompt_tuning", num_virtual_tokens=2).apply(tiny_bert())
    fm = flops.flops_model(m)
    assert (fm.prompt_tokens, fm.prefix_tokens) == (2, 0)
    # 12 rows per sequence, every input needs a gradient (down to the prompt), no weights train
    block = 2 * 12 * (128 + 128) + 4 * 12 * 12 * 4 * (1 + 4 / 2)
    head = 2 * (24 + 24 + 8)  # peft trains the classifier, not BERT's pooler
    assert flops.train_flops_per_step(fm, 1, seq) == 2 * block + head

    m = get_strategy("prefix_tuning", num_virtual_tokens=2).apply(tiny_bert())
    fm = flops.flops_model(m)
    assert (fm.prompt_tokens, fm.prefix_tokens) == (0, 2)
    # 10 rows, 12 keys; the gradient reaches the bottom block's attention (its keys and values),
    # not its q/k/v projections' input, nor its queries (no dQ)
    scores = 4 * 10 * 12 * 4
    bottom = 2 * 10 * (128 + 80) + scores * (1 + 3 / 2)
    above = 2 * 10 * (128 + 128) + scores * (1 + 4 / 2)
    assert flops.train_flops_per_step(fm, 1, seq) == bottom + above + 2 * (24 + 24 + 8)


def test_checkpoint_bytes_grow_with_state():
    small = cost.checkpoint_bytes({"a": torch.zeros(10)})
    big = cost.checkpoint_bytes({"a": torch.zeros(1000)})
    assert big - small == pytest.approx(990 * 4, abs=16)


def test_peak_memory_sees_an_allocation():
    import time

    from ptft_bench.run.execute import release_memory

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
    from ptft_bench.strategy.callbacks import TrainState

    m = tiny_bert()
    for n, p in m.named_parameters():
        p.requires_grad_(n.startswith(("classifier", "bert.pooler")))
    meter = flops.FlopsMeter(flops.flops_model(m), find_parts(m))
    st = TrainState(m, None, batch_positions=100, batch_width=10)  # 10 sequences of 10
    meter.on_step_end(st)
    assert meter.total == 10 * 8432  # head only: see the hand-checked case above
    for n, p in m.named_parameters():  # a callback unfreezes the last block
        if n.startswith("bert.encoder.layer.1."):
            p.requires_grad_(True)
    meter.on_step_end(st)
    assert meter.total == 10 * 8432 + 10 * 15824  # top-1


def tiny_llama(hidden=4, inter=8, layers=2, labels=2, vocab=10):
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,  # grouped-query attention: k and v project to one 2-wide head
        max_position_embeddings=16,
        num_labels=labels,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg)


def test_decoder_flops_hand_checked():
    """Llama: q 4x4 + k, v 4x2 each (GQA) + o 4x4 + SwiGLU's gate, up 4x8 and down 8x4 = 144
    matmul parameters per block; the score layer (4x2, no bias) runs on every position.

    Attention scores use the query heads' width (2 heads x 2 = 4): 4*10*10*4 = 1600 forward per
    sequence and block, 800 per backward matmul (keys and values are repeated per query head).
    """
    m = tiny_llama()
    seq, attn = 10, 1600
    fm = flops.flops_model(m)  # everything trainable
    assert fm.per_layer == [144, 144] and fm.head.fwd == 8 and fm.head_per_position
    assert fm.hidden == 4
    block = 2 * seq * (144 + 144 + 144) + attn + 4 * 800
    head = 2 * seq * (8 + 8 + 8)  # ten positions, not one
    assert flops.train_flops_per_step(fm, 1, seq) == 2 * block + head == 27360

    for n, p in m.named_parameters():  # head only
        p.requires_grad_(n.startswith("score"))
    fm = flops.flops_model(m)
    frozen = 2 * seq * 144 + attn
    head = 2 * seq * (8 + 0 + 8)  # the score's input needs no gradient
    assert flops.train_flops_per_step(fm, 1, seq) == 2 * frozen + head == 9280
    assert flops.train_flops_per_step(fm, 1, seq, first_cached_layer=2) == head

    # top-1: the last block, the final norm (layer L) and the head. The block's input norm runs
    # before q/k/v (Llama registers it after the MLP: forward order is read off a forward pass),
    # so q/k/v need their input's gradient too.
    for n, p in m.named_parameters():
        p.requires_grad_(n.startswith(("score", "model.layers.1.", "model.norm")))
    fm = flops.flops_model(m)
    assert (fm.stages[2].dx, fm.stages[2].dw) == (144, 144)
    top = 2 * seq * (144 + 144 + 144) + attn + 4 * 800
    assert flops.train_flops_per_step(fm, 1, seq) == frozen + top + 2 * seq * 24 == 18400
