"""Find a sequence-classification model's embeddings, transformer blocks and head by structure.

Strategies, frozen-prefix caching and the FLOPs estimate need "layer i" without knowing the
architecture's attribute names (BERT's `encoder.layer`, DistilBERT's `transformer.layer`, ...).
The rules: the backbone is `model.base_model`; the blocks are the longest `nn.ModuleList` inside
it; the embeddings are the backbone child holding the input embeddings; everything outside the
backbone (plus a backbone `pooler`) is the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass
class ModelParts:
    """The parts of one model, found once per run and handed to whoever needs "layer i".

    `model` is the module the parts were found in (names in `layer_of` are its parameter names);
    a strategy that wraps the model (peft) yields a new model whose parts are found again.
    """

    model: nn.Module
    backbone: nn.Module
    embeddings: nn.Module
    blocks: list[nn.Module]
    blocks_prefix: str  # qualified name of the ModuleList holding the blocks
    head: dict[str, nn.Module] = field(default_factory=dict)  # qualified name -> module
    pooler: tuple[str, nn.Module] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def layer_of(self, param_name: str) -> int | None:
        """0 for embeddings, 1..L for block L-1, L+1 for head/pooler, None for anything else."""
        if param_name.startswith(self.blocks_prefix + "."):
            return int(param_name[len(self.blocks_prefix) + 1 :].split(".")[0]) + 1
        if param_name.startswith(self.embeddings_prefix + "."):
            return 0
        if any(param_name.startswith(h + ".") for h in self.head) or (
            self.pooler and param_name.startswith(self.pooler[0] + ".")
        ):
            return self.num_layers + 1
        return None

    embeddings_prefix: str = ""


def unique_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """`named_parameters()` with shared (tied) tensors listed once, under their first name."""
    seen: set[int] = set()
    out = []
    for n, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            out.append((n, p))
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face task model inside `model` (peft and other wrappers are looked through)."""
    for m in model.modules():
        prefix = getattr(m, "base_model_prefix", "")
        if prefix and prefix in m._modules:  # a direct child, not one reached by __getattr__
            return m
    return model


def find_parts(model: nn.Module) -> ModelParts:
    """Locate the parts of `model` (a HF sequence-classification model, possibly peft-wrapped)."""
    task_model = _unwrap(model)
    prefix = getattr(task_model, "base_model_prefix", "")
    backbone = getattr(task_model, prefix, None) if prefix else None
    if backbone is None:
        raise ValueError(
            f"cannot find the encoder of {type(task_model).__name__}: expected a Hugging Face "
            "model with `base_model_prefix` (e.g. AutoModelForSequenceClassification)"
        )
    names = {id(m): n for n, m in model.named_modules()}
    backbone_name = names[id(backbone)]

    lists = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(
            f"no transformer blocks (nn.ModuleList) found in {type(backbone).__name__}"
        )
    list_name, blocks = max(lists, key=lambda nm: len(nm[1]))
    blocks_prefix = f"{backbone_name}.{list_name}"

    emb_weight = backbone.get_input_embeddings().weight
    embeddings = None
    for child_name, child in backbone.named_children():
        if any(p is emb_weight for p in child.parameters()):
            embeddings = (child_name, child)
            break
    if embeddings is None:
        raise ValueError(f"no input embeddings found in {type(backbone).__name__}")

    pooler = None
    for child_name, child in backbone.named_children():
        if "pool" in child_name:
            pooler = (f"{backbone_name}.{child_name}", child)
    head = {}
    for child in task_model.children():
        if child is backbone or not any(True for _ in child.parameters()):
            continue
        head[names[id(child)]] = child
    return ModelParts(
        model=model,
        backbone=backbone,
        embeddings=embeddings[1],
        blocks=list(blocks),
        blocks_prefix=blocks_prefix,
        head=head,
        pooler=pooler,
        embeddings_prefix=f"{backbone_name}.{embeddings[0]}",
    )
