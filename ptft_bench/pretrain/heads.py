"""Language-model heads: load a model with one (adding a fresh head when missing) and the loss.

A checkpoint without a masked-LM head (all-MiniLM-L6-v2 ships the encoder only) loads through
``AutoModelForMaskedLM`` with a freshly initialised ``cls.predictions`` whose decoder weight is the
word-embedding matrix itself (tied; :func:`head_is_tied` checks it). Only the transform (dense +
LayerNorm) and the output bias start from scratch, so the head learns fast.

The loss projects onto the vocabulary only where a loss is needed: run the base model, gather the
hidden states at positions with ``labels != -100`` and apply the head there. For masked LM that is
~15% of positions (measured on MiniLM at length 128: 5.9 s -> 2.9 s per step); the numbers are the
same as the full projection's (tested). Architectures with logit post-processing the split would
miss fall back to the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ptft_bench.errors import UserError, first_line

# Attributes holding the whole LM head (transform + decoder), in the order they are tried.
HEAD_ATTRIBUTES = ("cls", "lm_head")
# Config fields that mean "logits are post-processed after the head": sparse projection would skip
# that step, so such models use the full forward.
LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "output_mult", "logits_scaling")


@dataclass
class LoadedLM:
    """A language model plus what the user should be told about how it was built."""

    model: torch.nn.Module
    new_head: bool
    tied: bool
    notes: list[str] = field(default_factory=list)
    unexpected: set[str] = field(default_factory=set)  # checkpoint keys the LM class ignores
    source_path: str | None = None


def head_is_tied(model: torch.nn.Module) -> bool:
    """True when the output projection shares storage with the input word embeddings."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None:
        return False
    return out.weight.data_ptr() == inp.weight.data_ptr()


def load_lm(path: str, objective: str, spec: str | None = None) -> LoadedLM:
    """``AutoModelForMaskedLM`` / ``AutoModelForCausalLM`` from ``path``, reporting a new head."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the new head; we say it in one line
    try:
        model, info = auto.from_pretrained(path, output_loading_info=True)
    except ValueError as e:
        kind = "masked-LM" if objective == "mlm" else "causal-LM"
        raise UserError(
            f"model {spec or path} has no {kind} architecture in transformers "
            f"({first_line(e, limit=120)}): pick the other --objective or another --model"
        ) from None
    except OSError as e:
        raise UserError(f"cannot load model {spec or path}: {first_line(e)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = list(info.get("missing_keys", []))
    head_prefixes = tuple(f"{a}." for a in HEAD_ATTRIBUTES)
    new_head = any(k.startswith(head_prefixes) for k in missing)
    tied = head_is_tied(model)
    notes = []
    if new_head:
        notes.append(
            f"{spec or path} has no {objective.upper()} head: added a fresh one "
            + (
                "(decoder tied to the input word embeddings; transform and bias newly initialised)"
                if tied
                else "(untied, newly initialised)"
            )
        )
    other_missing = [k for k in missing if not k.startswith(head_prefixes)]
    if other_missing:
        notes.append(f"newly initialised outside the head: {', '.join(other_missing[:5])}")
    unexpected = set(info.get("unexpected_keys", []))
    return LoadedLM(model, new_head, tied, notes, unexpected, path)


def split_lm(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(base model, LM head) when the head can be applied to gathered hidden states, else None."""
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_POSTPROCESSING):
        return None
    base_prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, base_prefix, None) if base_prefix else None
    if base is None:
        return None
    for name in HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return base, head
    return None


@dataclass
class LossOutput:
    """Mean cross-entropy over target positions, plus counts for accuracy / token-weighted means."""

    loss: torch.Tensor
    num_targets: int
    num_correct: int


def lm_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], sparse: bool = True
) -> LossOutput:
    """Cross-entropy where ``labels != -100`` (labels aligned with positions, see collate.py).

    ``sparse=True`` applies the LM head only at target positions; ``False`` projects every
    position (the reference the sparse path is tested against).
    """
    input_ids, labels = batch["input_ids"], batch["labels"]
    attention_mask = batch.get("attention_mask")
    selected = labels != -100
    targets = labels[selected]
    parts = split_lm(model) if sparse else None
    if parts is not None:
        base, head = parts
        hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[selected])
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[selected]
    if targets.numel() == 0:
        # A batch can draw no masked token at all; a zero loss keeps the graph and the step count.
        return LossOutput(logits.sum() * 0.0, 0, 0)
    loss = F.cross_entropy(logits.float(), targets)
    correct = int((logits.detach().argmax(-1) == targets).sum())
    return LossOutput(loss, int(targets.numel()), correct)
