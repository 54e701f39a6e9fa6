"""A strategy works the same in a plain PyTorch loop, under Accelerate and in the HF `Trainer`.

Each test trains a tiny model for a few steps and checks that exactly the parameters the
strategy means to train moved (head + top block, in the layer-wise cases below).
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from tiny_models import tiny_batch, tiny_model
from transformers import Trainer, TrainingArguments

from ptft_bench import get_strategy
from ptft_bench.strategy.callbacks import TrainCallback, TrainState
from ptft_bench.strategy.hf import (
    HFCallbackAdapter,
    accelerate_prepare,
    check_world_size,
    trainer_kwargs,
)

L = 3  # tiny_model's default depth
LR = 1e-2


class TinyDataset(torch.utils.data.Dataset):
    """`n` random examples as the dicts the Trainer's default collator stacks."""

    def __init__(self, n: int = 8) -> None:
        self.batch = tiny_batch(batch_size=n, seed=3)

    def __len__(self) -> int:
        return len(self.batch["labels"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch.items()}


def block_of(name: str) -> int | None:
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a == "layer" and b.isdigit():
            return int(b)
    return None


def is_head(name: str) -> bool:
    return name.startswith(("classifier.", "pre_classifier.", "pooler.", "bert.pooler."))


def head_and_top_blocks(model: torch.nn.Module, k: int) -> set[str]:
    return {
        n
        for n, _ in model.named_parameters()
        if is_head(n) or (block_of(n) is not None and block_of(n) >= L - k)
    }


def changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each test here starts and ends without them."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_plain_pytorch_loop_with_gradual_unfreezing() -> None:
    strategy = get_strategy("gradual_unfreezing", unit="epoch", every=1)
    model = strategy.apply(tiny_model("roberta"))
    optimizer = torch.optim.AdamW(strategy.param_groups(model, lr=LR))
    callbacks = strategy.callbacks()
    state = TrainState(model, optimizer, steps_per_epoch=2, total_steps=6)
    before = snapshot(model)
    for cb in callbacks:
        cb.on_train_begin(state)
    model.train()
    for epoch in range(3):  # stages 0, 1, 2: head, + top block, + the block below it
        state.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(state)
        for step in range(2):
            model(**tiny_batch(seed=10 * epoch + step)).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            for cb in callbacks:
                cb.on_step_end(state)
    for cb in callbacks:
        cb.on_train_end(state)
    assert changed(model, before) == head_and_top_blocks(model, 2)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_accelerate_prepare_and_step(arch: str) -> None:
    accelerator = Accelerator(cpu=True)
    strategy = get_strategy("top_k", k=1)
    model = strategy.apply(tiny_model(arch))
    loader = torch.utils.data.DataLoader(TinyDataset(), batch_size=4)
    before = snapshot(model)
    model, optimizer, loader = accelerate_prepare(accelerator, strategy, model, LR, loader)
    model.train()
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    base = accelerator.unwrap_model(model)
    assert changed(base, before) == head_and_top_blocks(base, 1)


@pytest.mark.parametrize(
    "name, params, epochs",
    [
        ("top_k", {"k": 1}, 1),
        # Epoch 0 trains the head, epoch 1 also the top block: the same set as top_k(k=1).
        ("gradual_unfreezing", {"unit": "epoch", "every": 1}, 2),
    ],
)
def test_hf_trainer_trains_only_intended_parameters(name, params, epochs, tmp_path) -> None:
    strategy = get_strategy(name, **params)
    model = strategy.apply(tiny_model("bert"))
    before = snapshot(model)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=epochs,
        learning_rate=LR,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=TinyDataset(), **trainer_kwargs(strategy, model, args)
    )
    trainer.train()
    assert trainer.state.global_step == 2 * epochs
    assert changed(model, before) == head_and_top_blocks(model, 1)


def test_hf_trainer_keeps_layerwise_learning_rates(tmp_path) -> None:
    strategy = get_strategy("discriminative_lr", decay=0.5, head_lr_multiplier=4.0)
    model = strategy.apply(tiny_model("bert"))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        learning_rate=LR,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    kwargs = trainer_kwargs(strategy, model, args)
    trainer = Trainer(model=model, args=args, train_dataset=TinyDataset(), **kwargs)
    trainer.train()
    # The Trainer built its scheduler over our groups, so each keeps its own base rate.
    base_lrs = sorted(set(trainer.lr_scheduler.base_lrs))
    assert base_lrs == pytest.approx(sorted({LR * 0.5**k for k in range(L + 1)} | {LR * 4.0}))


def test_callback_adapter_maps_trainer_state() -> None:
    seen = []

    class Record(TrainCallback):
        def on_epoch_begin(self, state):
            seen.append((state.epoch, state.global_step, state.steps_per_epoch, state.total_steps))

    adapter = HFCallbackAdapter(Record())

    class FakeState:
        epoch, global_step, max_steps = 0.9999999, 4, 12

    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    adapter.on_epoch_begin(args, FakeState(), None, model=None, train_dataloader=[0] * 4)
    assert seen == [(1, 4, 4, 12)]


def test_multi_process_refused_for_unfreezing() -> None:
    with pytest.raises(ValueError, match="gradual_unfreezing.*2 processes"):
        check_world_size(get_strategy("gradual_unfreezing"), 2)
    check_world_size(get_strategy("top_k"), 2)  # static strategies are fine under DDP


def test_trainer_default_optimizer_misses_unfrozen_block(tmp_path) -> None:
    # Why `trainer_kwargs` passes its own optimizer: the Trainer's default one is built over the
    # parameters that require grad at the start, so a block unfrozen later never moves.
    strategy = get_strategy("gradual_unfreezing", unit="epoch", every=1)
    model = strategy.apply(tiny_model("bert"))
    before = snapshot(model)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        learning_rate=LR,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    callbacks = [HFCallbackAdapter(cb) for cb in strategy.callbacks()]
    trainer = Trainer(model=model, args=args, train_dataset=TinyDataset(), callbacks=callbacks)
    trainer.train()
    assert any(block_of(n) == L - 1 for n, p in model.named_parameters() if p.requires_grad)
    assert changed(model, before) == head_and_top_blocks(model, 0)
