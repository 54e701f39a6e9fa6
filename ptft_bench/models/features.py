"""Frozen features: the input of the head's last Linear layer, for closed-form strategies.

The linear probe fits a logistic (or ridge) regression on exactly what the task head's final
Linear layer reads: the pooled vector (`ptft_bench.models.pooling`), after a backbone pooler when the
model keeps one. A forward pre-hook on that layer captures it, so the features are the model's
own, whatever the architecture.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ptft_bench.models.parts import ModelParts
from ptft_bench.models.pooling import pool
from ptft_bench.tasks import encode as D


def head_linear(parts: ModelParts) -> tuple[str, nn.Linear] | str:
    """The head's only Linear layer (name, module), or the reason the head is not linear.

    A head with a hidden layer of its own (RoBERTa's dense + tanh, DistilBERT's pre_classifier)
    would make a "linear probe" read randomly initialised features.
    """
    linears = [
        (f"{prefix}.{n}" if n else prefix, m)
        for prefix, head in parts.head.items()
        for n, m in head.named_modules()
        if isinstance(m, nn.Linear)
    ]
    if len(linears) != 1:
        names = ", ".join(n for n, _ in linears) or "none"
        return f"the task head has {len(linears)} Linear layers ({names}), not one"
    return linears[0]


@torch.no_grad()
def extract(
    model: nn.Module,
    linear: nn.Linear,
    split: D.EncodedSplit,
    pad_id: int,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """(n, d) float32 inputs of `linear` for every example of `split`, in the split's order."""
    captured: list[torch.Tensor] = []
    hook = linear.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    out = np.zeros((len(split), linear.in_features), dtype=np.float32)
    try:
        for idx in D.eval_batches(split.lengths, batch_size):
            batch = D.collate(split, idx, pad_id)
            batch.pop("labels")
            captured.clear()
            batch = {k: v.to(device) for k, v in batch.items()}
            model(**batch)
            feats = captured[-1]
            if feats.dim() == 3:  # a decoder's score layer runs on every position; its head
                feats = pool(feats, batch["attention_mask"], "last")  # reads the last real token
            out[idx] = feats.float().cpu().numpy()
    finally:
        hook.remove()
        model.train(was_training)
    return out
