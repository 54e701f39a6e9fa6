"""Linear probe: logistic regression (ridge for regression) on frozen, pooled features.

The floor any fine-tuning strategy must beat, and the reference for head-only training: the same
linear head on the same features, fitted to convergence by scikit-learn with its regularisation
chosen on the validation split (Alain & Bengio 2016; the standard "linear evaluation" of
representation learning). Nothing in the encoder changes; the fitted weights are written into
the task head's Linear layer, so the model scores validation and test like every other run.
Features are standardised for the fit, and the scaling is folded back into the weights.
A decoder's `score` layer has no bias; the probe gives it one (zero at first, saved with the
head), since logistic regression on standardised features needs its intercept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ptft_bench.models.features import head_linear
from ptft_bench.models.parts import find_parts
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy
from ptft_bench.tasks.metrics import compute_metrics


@dataclass
class LinearProbeConfig:
    strengths: tuple[float, ...] = field(
        default=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 10.0, 100.0),
        metadata={
            "help": "inverse regularisation C (logistic) or 1/alpha (ridge) to choose from on "
            "validation"
        },
    )
    max_iter: int = field(default=2000, metadata={"help": "solver iterations (lbfgs)"})

    def __post_init__(self) -> None:
        if not self.strengths or any(c <= 0 for c in self.strengths):
            raise ValueError(f"linear_probe: strengths must be positive, got {self.strengths}")
        if self.max_iter < 1:
            raise ValueError(f"linear_probe: max_iter must be >= 1, got {self.max_iter}")


@register_strategy("linear_probe")
class LinearProbe(Strategy):
    description = "Logistic / ridge regression on frozen pooled features (scikit-learn), no SGD."
    family = "head"
    config_class = LinearProbeConfig
    needs_task_head = True
    trains_on_quantized_base = True
    serving = SAME_MODEL  # the base model with its own task head
    multi_adapter = True  # the backbone stays frozen: one base, a head per task
    default_lrs = (0.0,)
    trains_by_gradient = False

    @classmethod
    def supports(cls, model: nn.Module) -> str | None:
        found = head_linear(find_parts(model))
        return found if isinstance(found, str) else None

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        parts = self.bind(model, context).parts
        found = head_linear(parts)
        if isinstance(found, str):
            raise ValueError(f"linear_probe: {found}; use head_only for this model")
        model.requires_grad_(False)
        linear = found[1]
        if linear.bias is None:
            linear = _with_bias(model, *found)
            if found[0] in parts.head:  # the head is that very Linear (a decoder's `score`)
                parts.head[found[0]] = linear
        linear.requires_grad_(True)  # what the probe sets (and a checkpoint keeps)
        return model

    def fit_features(self, model: nn.Module, features: dict[str, Any], task: Any) -> dict[str, Any]:
        (x_tr, y_tr), (x_va, y_va) = features["train"], features["validation"]
        mean, scale = x_tr.mean(0), x_tr.std(0) + 1e-6
        z_tr, z_va = (x_tr - mean) / scale, (x_va - mean) / scale
        scores = {}
        fitted = {}
        for c in self.config.strengths:
            est = self._estimator(c, task.is_regression).fit(z_tr, y_tr)
            pred = est.predict(z_va)
            scores[c] = compute_metrics(task, pred, y_va)[task.primary_metric]
            fitted[c] = est
        best = max(self.config.strengths, key=lambda c: (scores[c], -c))  # ties: stronger reg.
        self._write_head(model, fitted[best], mean, scale, task)
        return {"chosen_strength": best, "validation_by_strength": scores}

    def _estimator(self, c: float, regression: bool):
        from sklearn.linear_model import LogisticRegression, Ridge

        if regression:
            return Ridge(alpha=1.0 / c)
        return LogisticRegression(C=c, max_iter=self.config.max_iter)

    def _write_head(self, model, est, mean, scale, task) -> None:
        """Fold the standardisation into the head's Linear: w·(x-μ)/σ + b = (w/σ)·x + b'."""
        _, linear = head_linear(self.parts_for(model))
        if not task.is_regression and list(est.classes_) != list(range(task.num_labels)):
            raise ValueError(
                f"linear_probe: the training split has classes {list(est.classes_)}, not all "
                f"{task.num_labels}: add training examples of every class"
            )
        coef = np.atleast_2d(est.coef_).astype(np.float64)
        intercept = np.atleast_1d(est.intercept_).astype(np.float64)
        if not task.is_regression and coef.shape[0] == 1:  # binary: logits (-z/2, +z/2)
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        weight = coef / scale
        bias = intercept - weight @ mean
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
            linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


def _with_bias(model: nn.Module, name: str, linear: nn.Linear) -> nn.Linear:
    """Replace the bias-free Linear at `name` by one with a zero bias and the same weight."""
    parent_name, _, attr = name.rpartition(".")
    biased = nn.Linear(linear.in_features, linear.out_features, bias=True)
    biased.to(linear.weight.device, linear.weight.dtype)
    with torch.no_grad():
        biased.weight.copy_(linear.weight)
        biased.bias.zero_()
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, biased)
    return biased
