"""Find a model's embeddings, transformer blocks and head by structure.

Sequence classifiers have a task head; causal LMs (generation tasks) have their pretrained
output projection over the vocabulary instead (`lm_head`), which no strategy treats as a head.

Strategies, frozen-prefix caching and the FLOPs estimate need "layer i" without knowing the
architecture's attribute names (BERT's `encoder.layer`, GPT-2's `transformer.h`, Llama's
`model.layers`, OPT's `model.decoder.layers`, ...). The rules:

- the backbone is `model.base_model`; the blocks are the longest `nn.ModuleList` inside it;
- the embeddings are the module holding the input embeddings, found beside the blocks (OPT keeps
  both inside `decoder`: we look inside the module that holds the blocks);
- everything outside the backbone (plus a backbone `pooler`) is the head;
- backbone modules outside the embeddings and the blocks run either below the blocks (GPT-2's
  position embeddings, ELECTRA's `embeddings_project`, DeBERTa's relative embeddings) or above
  them (a decoder's final norm: GPT-2's `ln_f`, Llama's `norm`, OPT's `final_layer_norm`,
  ModernBERT's `final_norm`). Which one is read off one forward pass of the backbone on two
  tokens (`forward_order`), since registration order misleads (OPT registers its final norm
  before its blocks, DeBERTa its relative-embedding norm after them). Where the backbone cannot
  run (the meta device of the time estimate), registration order decides.

Layer numbering (`layer_of`): 0 = embeddings, 1..L = blocks, L + 1 = head. The modules above the
blocks (`top`, the final norm) belong to layer L, the top block: a norm that only rescales the
top block's output trains with it (top-k with k >= 1, gradual unfreezing's first stage) and gets
its learning rate (discriminative rates); head-only training and `top_k` with k = 0 leave it
frozen, so the two stay the same strategy.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
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
    # a causal LM's output projection over the vocabulary (`lm_head`): pretrained, not a task
    # head, so strategies leave it as the base model has it (often tied to the embeddings)
    lm_head: dict[str, nn.Module] = field(default_factory=dict)
    pooler: tuple[str, nn.Module] | None = None
    embeddings_prefix: str = ""
    # backbone modules that run after the blocks (a decoder's final norm): layer L
    top: dict[str, nn.Module] = field(default_factory=dict)
    # id(module) -> position of its first call in one forward pass of the backbone; empty when
    # the backbone could not run (then registration order stands in for forward order)
    order: dict[int, int] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def is_causal_lm(self) -> bool:
        """The model predicts tokens (a generation task), not a class through a head."""
        return bool(self.lm_head)

    def layer_of(self, param_name: str) -> int | None:
        """0 embeddings, 1..L block L-1 (and the final norm: L), L+1 head/pooler, else None."""
        if param_name.startswith(self.blocks_prefix + "."):
            return int(param_name[len(self.blocks_prefix) + 1 :].split(".")[0]) + 1
        if param_name.startswith(self.embeddings_prefix + "."):
            return 0
        if any(param_name.startswith(t + ".") for t in self.top):
            return self.num_layers
        if any(param_name.startswith(h + ".") for h in [*self.head, *self.lm_head]) or (
            self.pooler and param_name.startswith(self.pooler[0] + ".")
        ):
            return self.num_layers + 1
        return None


def unique_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """`named_parameters()` with shared (tied) tensors listed once, under their first name."""
    seen: set[int] = set()
    out = []
    for n, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            out.append((n, p))
    return out


def param_count(p: torch.Tensor) -> int:
    """Parameters a tensor stands for: a 4-bit quantized weight (bitsandbytes packs two values
    per byte) counts its logical shape, not its storage."""
    state = getattr(p, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else p.numel()


def count_parameters(model: nn.Module) -> int:
    """All parameters of `model`, tied tensors once (`param_count` each)."""
    return sum(param_count(p) for _, p in unique_named_parameters(model))


def linear_dims(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a Linear-like layer: `nn.Linear`, or GPT-2's `Conv1D` (weight
    stored transposed, sizes `nx` -> `nf`); None for anything else."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        return module.nx, module.nf
    return None


def is_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2, GPT-J's relatives): a Linear with a transposed weight."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's LayerNorm / RMSNorm, or a model's own (LlamaRMSNorm, ...)."""
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)):
        return True
    return type(module).__name__.lower().endswith("norm") and not any(module.children())


def _unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face task model inside `model` (peft and other wrappers are looked through)."""
    for m in model.modules():
        # read off the class: peft's wrappers forward unknown attributes to the model they wrap,
        # and LoraModel's child `model` would pass for Llama's backbone prefix "model"
        prefix = getattr(type(m), "base_model_prefix", "")
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
    emb_name, embeddings = _embeddings(backbone, blocks)

    pooler = None
    for child_name, child in backbone.named_children():
        if "pool" in child_name:
            pooler = (f"{backbone_name}.{child_name}", child)
    head, lm_head = {}, {}
    output_embeddings = task_model.get_output_embeddings()
    for child in task_model.children():
        if child is backbone or not any(True for _ in child.parameters()):
            continue
        (lm_head if child is output_embeddings else head)[names[id(child)]] = child
    skip = [embeddings, blocks] + ([pooler[1]] if pooler else [])
    order = forward_order(backbone, blocks)
    top = {
        f"{backbone_name}.{n}": m
        for n, m in outside_modules(backbone, skip)
        if _runs_after(m, blocks, order, backbone)
    }
    return ModelParts(
        model=model,
        backbone=backbone,
        embeddings=embeddings,
        blocks=list(blocks),
        blocks_prefix=f"{backbone_name}.{list_name}",
        head=head,
        lm_head=lm_head,
        pooler=pooler,
        embeddings_prefix=f"{backbone_name}.{emb_name}",
        top=top,
        order=order,
    )


def _embeddings(backbone: nn.Module, blocks: nn.ModuleList) -> tuple[str, nn.Module]:
    """(name in the backbone, module) of the input embeddings' holder beside the blocks."""
    emb_weight = backbone.get_input_embeddings().weight
    node, prefix = backbone, ""
    while True:
        found = next(
            (
                (n, c)
                for n, c in node.named_children()
                if any(p is emb_weight for p in c.parameters())
            ),
            None,
        )
        if found is None:
            raise ValueError(f"no input embeddings found in {type(backbone).__name__}")
        name = f"{prefix}.{found[0]}" if prefix else found[0]
        if not any(m is blocks for m in found[1].modules()):
            return name, found[1]
        node, prefix = found[1], name  # OPT: `decoder` holds embeddings and blocks


def outside_modules(backbone: nn.Module, skip: list[nn.Module], prefix: str = ""):
    """(name, module) of the backbone's parameter holders outside `skip` (embeddings, blocks,
    pooler), largest first: a module that holds none of `skip` is taken whole."""
    for name, child in backbone.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        if any(child is s for s in skip):
            continue
        if any(m is s for m in child.modules() for s in skip):
            yield from outside_modules(child, skip, qualified)  # BERT's `encoder`, OPT's `decoder`
        elif any(True for _ in child.parameters()):
            yield qualified, child


# forward orders by backbone, computed once per model (strategies keep the backbone object)
END_OF_BLOCKS = -1  # the key under which the order records the end of the last block
_ORDERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_order(backbone: nn.Module, blocks: nn.ModuleList) -> dict[int, int]:
    """id(module) -> position of its first call when the backbone runs once on two tokens.

    Runs in eval mode without gradients (no dropout, so no random numbers are drawn), and gives
    an empty dict where the backbone cannot run (the meta device): callers then fall back to
    registration order.
    """
    if backbone in _ORDERS:
        return _ORDERS[backbone]
    order: dict[int, int] = {}

    def seen(module, *_) -> None:  # a hook that returns something replaces the input / output
        order.setdefault(id(module), len(order))

    def blocks_done(*_) -> None:
        order.setdefault(END_OF_BLOCKS, len(order))

    hooks = [m.register_forward_pre_hook(seen) for m in backbone.modules()]
    hooks.append(blocks[-1].register_forward_hook(blocks_done))
    training = {m: m.training for m in backbone.modules()}
    weight = backbone.get_input_embeddings().weight
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(input_ids=torch.zeros((1, 2), dtype=torch.long, device=weight.device))
    except Exception:  # noqa: BLE001 - cannot run here (meta tensors): registration order
        order = {}
    finally:
        for h in hooks:
            h.remove()
        for m, mode in training.items():
            m.training = mode
    _ORDERS[backbone] = order
    return order


def _runs_after(
    module: nn.Module, blocks: nn.ModuleList, order: dict[int, int], backbone: nn.Module
) -> bool:
    """Whether `module` runs after the last block (forward order, else registration order)."""
    if order:
        return order.get(id(module), -1) > order.get(END_OF_BLOCKS, len(order))
    position = {id(m): i for i, m in enumerate(backbone.modules())}
    return position[id(module)] > max(position[id(m)] for m in blocks.modules())
