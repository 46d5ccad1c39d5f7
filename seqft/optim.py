"""Layer-wise learning-rate decay (LLRD): parameter name → depth, and optimiser parameter groups with explicit rates.

Pure functions with no Trainer import; `SeqFTTrainer.create_optimizer` is their only caller in seqft.

Depths, for a model whose encoder has `L` transformer blocks (`num_layers_of(model)`):

* `0` — the embeddings: word/position/token-type embeddings and their LayerNorm, ELECTRA's `embeddings_project`,
  ALBERT's `encoder.embedding_hidden_mapping_in`, and DeBERTa's `encoder.rel_embeddings` with the
  `encoder.LayerNorm` that normalises them. DeBERTa's relative-position table is its position embedding: the encoder
  computes (and normalises) it once, before the first block, and hands the same tensor to every block, exactly as
  BERT's absolute `position_embeddings` are added once at the input.
* `k + 1` — transformer block `k` (0-based, as in `encoder.layer.k.`), so `1 … L`. DeBERTa-v2's `encoder.conv`
  (xlarge/xxlarge), applied to the first block's output only, goes with block 0.
* `L + 1` — everything above the last block: pooler, final norms (ModernBERT's `final_norm`, its `head`), the task
  head (`classifier`, `pre_classifier`, `score`, `qa_outputs`), a CRF (`crf.*`), distillation modules named
  `distill*`, and PEFT prompt-learning parameters (`prompt_encoder.*`, see below).

Learning rates, for a base rate `lr` and decay `d`: block `k` (depth `k`, `1 ≤ k ≤ L`) trains at `lr · d^(L − k)`,
so the topmost block trains at `lr` and the embeddings at `lr · d^L`; the top depth trains at `head_learning_rate`
when given, else at `lr`. Every group carries its rate as an explicit `"lr"`, and LR schedulers built on `LambdaLR`
(all of `transformers.get_scheduler`'s) multiply each group's initial rate by the same factor, so the ratios hold at
every step.

Architecture-specific choices:

* ALBERT shares one set of block weights across its layers (`encoder.albert_layer_groups.G.`, usually a single
  group). Depth counts distinct parameter blocks, not applications of them: `num_layers_of` returns
  `num_hidden_groups` for ALBERT and group `G` gets depth `G + 1`. The usual single shared group is therefore the
  topmost block (rate `lr`) and the embeddings sit one step below (`lr · d`). Inner layers of a group
  (`inner_group_num > 1`, used by no released checkpoint) share their group's depth.
* PEFT adapter weights (`lora_A`, `lora_B`, `ia3_l`, `lora_magnitude_vector`, ...) take the depth of the block they
  sit in, so a low block's update stays small whether it is learnt directly or through an adapter. `modules_to_save`
  copies take the depth of the module they copy.
* PEFT prompt learning (`prompt_encoder.*`: prefix tuning, P-tuning, prompt tuning) gets the top depth. Prefix
  tuning acts on every block at once, and all three are freshly initialised parameters that are the whole point of
  the run; LLRD exists to protect pretrained lower layers, not to starve new ones.

LoRA+ (Hayou et al., 2024; peft's `create_loraplus_optimizer`): with `lora_b_ratio` r, a LoRA adapter's `B` matrices
(`lora_B`, `lora_embedding_B`) train at r times the rate of their depth, in groups of their own; `A` matrices and
everything else keep their depth's rate. LLRD and LoRA+ compose: a block's `B` trains at `lr · d^(L − k) · r`.

A parameter no pattern places raises a `ValueError` naming it — seqft never falls back to one group silently.
Users of another architecture override `SeqFTTrainer.get_layer_id(name, num_layers)`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from .errors import RecipeError

__all__ = [
    "StepRates",
    "UnplacedParameterError",
    "check_deepspeed_optimizer",
    "get_layer_id",
    "group_learning_rates",
    "layer_name",
    "llrd_param_groups",
    "num_layers_of",
]

# Start of a dotted segment: the beginning of the name or right after a dot, so `layers` never matches inside
# `albert_layers` and `embeddings` never inside `rel_embeddings`.
_SEG = r"(?:^|\.)"

# Checked first: parameters that act on every block at once (see the module docstring).
_EVERY_LAYER_PATTERNS = (re.compile(_SEG + r"prompt_encoder\."),)

# Transformer blocks; group 1 is the 0-based block index.
_BLOCK_PATTERNS = (
    # BERT, MiniLM, RoBERTa, XLM-R, ELECTRA, DeBERTa (v1, v2, v3): `<prefix>.encoder.layer.N.`
    re.compile(_SEG + r"encoder\.layer\.(\d+)\."),
    # DistilBERT: `distilbert.transformer.layer.N.`
    re.compile(_SEG + r"transformer\.layer\.(\d+)\."),
    # ALBERT: `albert.encoder.albert_layer_groups.G.albert_layers.I.` (weights shared across layers)
    re.compile(_SEG + r"albert_layer_groups\.(\d+)\."),
    # ModernBERT: `model.layers.N.`
    re.compile(_SEG + r"layers\.(\d+)\."),
)

# Depth 1, with block 0: DeBERTa-v2's convolution (`conv_kernel_size` > 0, the xlarge/xxlarge checkpoints), which
# the encoder applies to the output of its first block only.
_FIRST_BLOCK_PATTERNS = (re.compile(_SEG + r"encoder\.conv\."),)

# Depth 0.
_EMBEDDING_PATTERNS = (
    re.compile(_SEG + r"embeddings\."),  # every architecture's embedding module (ModernBERT's included)
    re.compile(_SEG + r"embeddings_project\."),  # ELECTRA: embedding_size → hidden_size projection
    re.compile(_SEG + r"embedding_hidden_mapping_in\."),  # ALBERT: the same projection, inside the encoder
    re.compile(_SEG + r"encoder\.rel_embeddings\."),  # DeBERTa: relative-position embeddings
    # DeBERTa-v2/v3: the norm applied to `rel_embeddings`. (XLM-R XL, not supported, has a final norm by this name.)
    re.compile(_SEG + r"encoder\.LayerNorm\."),
)

# Depth L + 1: everything above the last block.
_TOP_PATTERNS = (
    re.compile(_SEG + r"pooler(?:\.|$)"),  # BERT-family pooler, DeBERTa `pooler.dense`, ALBERT `albert.pooler`
    re.compile(_SEG + r"final_norm\."),  # ModernBERT
    re.compile(_SEG + r"head\."),  # ModernBERT prediction head
    re.compile(_SEG + r"(?:pre_)?classifier\."),  # token/sequence classification heads (DistilBERT `pre_classifier`)
    re.compile(_SEG + r"score\."),
    re.compile(_SEG + r"qa_outputs\."),
    re.compile(_SEG + r"crf\."),  # seqft's CRF layer
    re.compile(_SEG + r"distill\w*\."),  # distillation projections (`distill_proj`, ...)
    re.compile(_SEG + r"(?:lm_head|cls|predictions)\."),  # masked-LM heads, for continued pre-training
)

_ARCHITECTURES = "BERT, MiniLM, RoBERTa, XLM-R, ELECTRA, DeBERTa (v1-v3), DistilBERT, ALBERT and ModernBERT"


class UnplacedParameterError(RecipeError):
    """`get_layer_id` found no depth for a parameter name."""


def get_layer_id(name: str, num_layers: int) -> int:
    """Depth of parameter `name` in a model with `num_layers` blocks: 0 embeddings, k+1 block k, L+1 above the top.

    `name` is as `model.named_parameters()` gives it, with any task-model prefix (`bert.`, `roberta.`, seqft's CRF
    `encoder.`) and any PEFT wrapping (`base_model.model.`, `.lora_A.default.weight`, `.modules_to_save.default.`).
    Raises `UnplacedParameterError` (a `ValueError`) for a name no pattern covers.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
    top = num_layers + 1
    if any(p.search(name) for p in _EVERY_LAYER_PATTERNS):
        return top
    for pattern in _BLOCK_PATTERNS:
        match = pattern.search(name)
        if match:
            index = int(match.group(1))
            if index >= num_layers:
                raise ValueError(
                    f"Parameter '{name}' sits in block {index}, but the model was said to have {num_layers} "
                    f"block(s); pass the count from `num_layers_of(model)` (for ALBERT this is `num_hidden_groups`)."
                )
            return index + 1
    if any(p.search(name) for p in _FIRST_BLOCK_PATTERNS):
        return 1
    if any(p.search(name) for p in _EMBEDDING_PATTERNS):
        return 0
    if any(p.search(name) for p in _TOP_PATTERNS):
        return top
    raise UnplacedParameterError(
        f"Cannot place parameter '{name}' in a layer for layer-wise learning-rate decay: its name matches none of "
        f"the patterns seqft knows ({_ARCHITECTURES})."
    )


def layer_name(layer_id: int, num_layers: int) -> str:
    """Stable display name of a depth: `embeddings`, `layer_00` … (the 0-based block index, as in the parameter
    names), `head`."""
    if layer_id == 0:
        return "embeddings"
    if layer_id == num_layers + 1:
        return "head"
    return f"layer_{layer_id - 1:02d}"


def _unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a PEFT model (or the model itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _layers_in_config(config: Any, depth: int = 0) -> int | None:
    """Block count from a config object or dict, searching nested (encoder) configs; None when absent."""
    if config is None or depth > 3:
        return None
    if isinstance(config, dict):
        get, nested = config.get, config.values()
    else:
        get, nested = (lambda key: getattr(config, key, None)), vars(config).values()
    if get("model_type") == "albert" and isinstance(get("num_hidden_groups"), int):
        return get("num_hidden_groups")
    for key in ("num_hidden_layers", "n_layers"):  # DistilBERT: `n_layers`
        if isinstance(get(key), int):
            return get(key)
    for value in nested:
        if isinstance(value, dict) or hasattr(value, "model_type"):
            found = _layers_in_config(value, depth + 1)
            if found is not None:
                return found
    return None


def num_layers_of(model: nn.Module) -> int:
    """Number of distinct transformer blocks of a (PEFT-wrapped, seqft CRF, or plain) model, read from its config.

    `num_hidden_layers` (`n_layers` for DistilBERT, `num_hidden_groups` for ALBERT), found on the model's config, on
    a config nested in it (an encoder config), or on the config of a submodule (seqft's CRF model's `encoder`).
    """
    base = _unwrap(model)
    found = _layers_in_config(getattr(base, "config", None))
    if found is None:
        for module in base.modules():
            if module is not base and hasattr(module, "config"):
                found = _layers_in_config(module.config)
                if found is not None:
                    break
    if found is None or found < 1:
        raise ValueError(
            f"Cannot tell how many transformer blocks {type(base).__name__} has: its config has no "
            "`num_hidden_layers` (nor `n_layers`, nor a nested encoder config with one). Pass `num_layers=` to "
            "`llrd_param_groups`, or set `layer_decay` to null."
        )
    return found


_NORM_NAME = re.compile(r"layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")
_BIAS_NAME = re.compile(r"(?:^|[._])bias(?:$|\.)")
# Multiplicative adapter scales initialised at 1 (IA3): decaying them pulls the layer's output towards zero.
_SCALE_NAME = re.compile(r"(?:^|\.)ia3_l(?:$|\.)")


def _is_norm_module(module: nn.Module) -> bool:
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)
    return isinstance(module, norm_types) or type(module).__name__.endswith("Norm")


def _no_decay_ids(model: nn.Module) -> set[int]:
    """ids of parameters owned directly by a normalisation module (LayerNorm, RMSNorm, DeBERTa's own LayerNorm)."""
    return {id(p) for module in model.modules() if _is_norm_module(module) for p in module.parameters(recurse=False)}


def _uses_weight_decay(name: str, param: torch.Tensor, norm_param_ids: set[int]) -> bool:
    """False for biases, normalisation weights, IA3 scales and every other ≤1-D parameter."""
    # Under DeepSpeed ZeRO-3 a partitioned parameter is a 0-size 1-D tensor; its real shape is `ds_shape`.
    ndim = len(getattr(param, "ds_shape", param.shape))
    lowered = name.lower()
    return not (
        ndim <= 1
        or id(param) in norm_param_ids
        or _BIAS_NAME.search(lowered)
        or _NORM_NAME.search(lowered)
        or _SCALE_NAME.search(lowered)
    )


# LoRA's up-projection: `...query.lora_B.default.weight`, and `lora_embedding_B` of adapted embeddings.
_LORA_B = re.compile(r"(^|\.)lora_(embedding_)?B\.")


def _model_description(model: nn.Module) -> str:
    base = _unwrap(model)
    model_type = getattr(getattr(base, "config", None), "model_type", None) or "unknown"
    return f"model type '{model_type}' ({type(base).__name__})"


def llrd_param_groups(
    model: nn.Module,
    *,
    learning_rate: float,
    layer_decay: float,
    weight_decay: float,
    head_learning_rate: float | None = None,
    get_layer_id: Callable[[str, int], int] = get_layer_id,
    num_layers: int | None = None,
    lora_b_ratio: float | None = None,
) -> list[dict[str, Any]]:
    """Optimiser parameter groups, one per (depth, decay / no decay), each with an explicit `"lr"`.

    Only parameters with `requires_grad` are included. Depth `k ≤ L` trains at `learning_rate · layer_decay^(L − k)`
    and the top depth `L + 1` at `head_learning_rate` (default `learning_rate`). Groups are ordered from the top depth
    down, so `param_groups[0]` — whose rate the Trainer logs as `learning_rate` — is the head's. Besides `params`,
    `lr` and `weight_decay`, each group carries `layer_id` and `layer_name` (torch optimisers keep extra keys);
    `group_learning_rates` reads them.

    `get_layer_id(name, num_layers)` may be replaced for another architecture; `num_layers` defaults to
    `num_layers_of(model)`. `lora_b_ratio` (LoRA+) puts LoRA `B` matrices in groups of their own at that multiple of
    their depth's rate, named like `layer_05/lora_B`; the model must then have some.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    if head_learning_rate is not None and not head_learning_rate > 0:
        raise ValueError(f"head_learning_rate must be > 0 or None, got {head_learning_rate}.")
    if lora_b_ratio is not None and not lora_b_ratio > 0:
        raise ValueError(f"lora_b_ratio must be > 0 or None, got {lora_b_ratio}.")
    if num_layers is None:
        num_layers = num_layers_of(model)
    top = num_layers + 1

    norm_param_ids = _no_decay_ids(model)
    grouped: dict[tuple[int, bool, bool], list[torch.Tensor]] = {}
    unplaced: list[str] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        try:
            layer_id = get_layer_id(name, num_layers)
        except UnplacedParameterError:
            unplaced.append(name)
            continue
        if not isinstance(layer_id, int) or not 0 <= layer_id <= top:
            raise ValueError(
                f"get_layer_id returned {layer_id!r} for parameter '{name}'; expected an int in [0, {top}] "
                f"(0 embeddings, 1..{num_layers} blocks, {top} head)."
            )
        lora_b = lora_b_ratio is not None and _LORA_B.search(name) is not None
        grouped.setdefault((layer_id, _uses_weight_decay(name, param, norm_param_ids), lora_b), []).append(param)

    if unplaced:
        more = f" and {len(unplaced) - 1} more" if len(unplaced) > 1 else ""
        raise UnplacedParameterError(
            f"Layer-wise learning-rate decay cannot place parameter '{unplaced[0]}'{more} of "
            f"{_model_description(model)}: seqft knows the parameter names of {_ARCHITECTURES}. Either override "
            f"`SeqFTTrainer.get_layer_id(name, num_layers)` to return its depth (0 embeddings, 1..{num_layers} "
            f"transformer blocks, {top} head) or set `layer_decay` to null to train every parameter at one "
            "learning rate."
        )
    if not grouped:
        raise ValueError(f"{_model_description(model)} has no trainable parameters (none has requires_grad=True).")
    if lora_b_ratio is not None and not any(lora_b for _, _, lora_b in grouped):
        raise ValueError(
            f"loraplus_lr_ratio is set but {_model_description(model)} has no trainable LoRA B matrix (lora_B): it "
            "applies to a LoRA adapter (peft_config with peft_type LORA); remove it otherwise."
        )

    groups = []
    for layer_id, decays, lora_b in sorted(grouped, key=lambda key: (-key[0], key[2], not key[1])):
        if layer_id == top:
            lr = learning_rate if head_learning_rate is None else head_learning_rate
        else:
            lr = learning_rate * layer_decay ** (num_layers - layer_id)
        groups.append(
            {
                "params": grouped[layer_id, decays, lora_b],
                "lr": lr * lora_b_ratio if lora_b else lr,
                "weight_decay": weight_decay if decays else 0.0,
                "layer_id": layer_id,
                "layer_name": layer_name(layer_id, num_layers) + ("/lora_B" if lora_b else ""),
            }
        )
    return groups


class StepRates(TrainerCallback):
    """Observes each group's learning rate for the step just taken: after `optimizer.step()`, before the scheduler
    moves the rates on, where the Trainer reads its own `learning_rate` (read at log time, they would be the next
    step's). Changes nothing."""

    def __init__(self):
        self.rates: dict[str, float] = {}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self.rates = group_learning_rates(optimizer)


def group_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Current rate per depth, keyed `lr/head`, `lr/layer_05`, `lr/embeddings` (`lr/group_3` for groups without
    `layer_name`), in group order. A depth's decay and no-decay groups share a key while their rates agree."""
    rates: dict[str, float] = {}
    for index, group in enumerate(optimizer.param_groups):
        key = f"lr/{group.get('layer_name', f'group_{index}')}"
        if key in rates and rates[key] != group["lr"]:
            key = f"{key}/group_{index}"
        rates.setdefault(key, group["lr"])
    return rates


def check_deepspeed_optimizer(deepspeed_config: dict | str | os.PathLike | None) -> None:
    """Raise if a DeepSpeed config (dict, JSON file path, or JSON text) would override seqft's optimizer or rates.

    An `"optimizer"` block makes DeepSpeed build its own optimizer, bypassing `create_optimizer` and so silently
    dropping LLRD's per-layer groups; a `"scheduler"` block writes one absolute rate into every group, destroying
    their ratios. Call only when LLRD is on.
    """
    if deepspeed_config is None:
        return
    config = _load_deepspeed_config(deepspeed_config)
    blocks = [key for key in ("optimizer", "scheduler") if key in config]
    if not blocks:
        return
    reasons = {
        "optimizer": 'an "optimizer" block makes DeepSpeed build its own optimizer, bypassing seqft\'s, so the '
        "per-layer learning rates would be silently dropped",
        "scheduler": 'a "scheduler" block makes DeepSpeed set one learning rate on every parameter group, so the '
        "per-layer ratios would be lost at its first step",
    }
    raise RecipeError(
        "The DeepSpeed config cannot be used with per-group learning rates (layer_decay, head_learning_rate or "
        "loraplus_lr_ratio): "
        + "; ".join(reasons[key] for key in blocks)
        + f". Remove the {' and '.join(repr(key) for key in blocks)} block(s) from the DeepSpeed config — the Trainer "
        "then builds the optimizer and scheduler from the recipe's TrainingArguments — or set those fields to null."
    )


def _load_deepspeed_config(deepspeed_config: dict | str | os.PathLike) -> dict:
    if isinstance(deepspeed_config, dict):
        return deepspeed_config
    config = getattr(deepspeed_config, "config", None)  # transformers' HfDeepSpeedConfig
    if isinstance(config, dict):
        return config
    text = os.fspath(deepspeed_config)
    if text.lstrip().startswith("{"):
        loaded = json.loads(text)
    elif os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            loaded = json.load(f)
    else:
        raise ValueError(f"DeepSpeed config '{text}' is neither a dict, JSON text, nor an existing file.")
    if not isinstance(loaded, dict):
        raise ValueError(f"DeepSpeed config must be a JSON object, got {type(loaded).__name__}.")
    return loaded


def match_zero3_dtype(model: nn.Module, args) -> int:
    """Under DeepSpeed ZeRO-3 with bf16/fp16, cast the trainable parameters that are still float32 to that dtype.

    ZeRO-3 flattens all trainable parameters into one buffer of one dtype. `zero.Init` builds the encoder in bf16, but
    modules made outside it stay float32: the CRF (`from_encoder`), and peft's adapters (it upcasts them on purpose,
    for plain mixed precision) — DeepSpeed stopped on `assert len(set(t.dtype ...)) == 1`. DeepSpeed keeps float32
    master weights in its optimiser, so nothing is lost. Returns the number of tensors cast (0 when not ZeRO-3).
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled() or not (args.bf16 or args.fp16):
        return 0
    dtype = torch.bfloat16 if args.bf16 else torch.float16
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != dtype and not hasattr(param, "ds_id"):
            param.data = param.data.to(dtype)
            cast += 1
    return cast
