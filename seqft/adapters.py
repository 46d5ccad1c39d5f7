"""Parameter-efficient fine-tuning with peft: adapter configs from recipe dicts, the task head and CRF trained and saved
with the adapter, adapter-only checkpoints that load offline, and merging into a plain model.

One hook: `SeqFTTrainer(..., peft_config=...)` calls `wrap_model` and then `initialize_from_data` at construction;
`seqft.train` also calls `check_peft_spec` before loading anything and `merge_and_save` after `save_model` when
`merge_adapter` is set.

* `check_peft_spec(spec, merge=...)` — validation without a model (run before any data or weights are loaded):
  the method exists and applies to encoders, every option is a field of its peft config class with a value of that
  field's type (`"r": "4"` is refused here, not as a TypeError inside peft), and `merge_adapter` is not asked of a
  method that cannot be merged.
* `build_peft_config(spec, model)` — the peft config, with what the method needs filled in from the model: the task
  type (TOKEN_CLS, or SEQ_CLS for a sequence classifier), default `target_modules` for the encoder family (also under
  seqft's CRF model, whose own `model_type` peft does not know), the encoder's layer/head/hidden sizes for prompt
  learning, and every module outside the encoder (`classifier`, `pre_classifier`, `pooler`, `crf`, ...) in
  `modules_to_save`. The caller's dict or config object is never modified. Every entry of a `target_modules`,
  `exclude_modules` or `modules_to_save` list must match a module of this model (peft skips one that does not, so a
  misspelt entry would silently adapt fewer layers), as must every `layers_to_transform` block.
* `wrap_model(model, spec)` — the `PeftModel`; logs `trainable_parameters`.
* `initialize_from_data(trainer)` — EVA (`init_lora_weights: "eva"`): the LoRA A matrices from the principal
  directions of each adapted layer's inputs on the training set, before the first step (the trainer's hook).
* `load_adapter_model(path)` — rebuilds the base model (the pretrained encoder named in `adapter_config.json`, plus
  the task model's own config saved in `path/base_config/`) and loads the adapter, head and CRF into it.
* `merge_and_save(peft_model, output_dir)` — a plain transformers model with the adapter merged in.

Prompt learning on token classification. peft's `PeftModelForTokenClassification` runs P-tuning and prompt tuning by
prepending virtual tokens to the *sequence*, so its logits have `num_virtual_tokens` extra positions and no longer
line up with the labels; its prefix-tuning path calls the encoder and `classifier` itself, skipping anything else
the model does (a CRF). seqft applies every prompt at the encoder instead: a forward pre-hook on the encoder adds the
prefix (the key/value cache, `cache` or `past_key_values`, and a longer attention mask) or the virtual-token embeddings, a forward hook removes the
virtual positions from the encoder's output, and the task model's own `forward` (its head, CRF, loss) runs unchanged
on the real tokens.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import functools
import importlib.util
import inspect
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path

import torch
from peft import (
    PeftConfig,
    PeftModel,
    PeftModelForSequenceClassification,
    PeftModelForTokenClassification,
    PeftType,
    PromptLearningConfig,
    TaskType,
)
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils.constants import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)
from torch import nn

from .data import PKG_PREFIX, resolve_path
from .errors import RecipeError, SeqFTError
from .parser import describe_type, json_fits

__all__ = [
    "BASE_CONFIG_DIR",
    "build_peft_config",
    "check_peft_spec",
    "head_modules",
    "initialize_from_data",
    "load_adapter_model",
    "merge_and_save",
    "trainable_parameters",
    "wrap_model",
]

logger = logging.getLogger("seqft")

BASE_CONFIG_DIR = "base_config"
"""Subfolder of an adapter checkpoint holding the task model's `config.json` (labels, head, CRF settings)."""

DEFAULT_NUM_VIRTUAL_TOKENS = 20

# Prompt-learning methods seqft can run on an encoder (see the module docstring). The other prompt-learning types
# (ADAPTION_PROMPT, MULTITASK_PROMPT_TUNING, CPT, CARTRIDGE) are decoder- or task-id-specific.
_PROMPT_TYPES = (PeftType.PREFIX_TUNING, PeftType.P_TUNING, PeftType.PROMPT_TUNING)
# Adapter methods built for causal LMs: ADAPTION_PROMPT (LLaMA-style attention), XLORA (mixes trained LoRA adapters).
_DECODER_ONLY = (PeftType.ADAPTION_PROMPT, PeftType.XLORA)
_TASK_TYPES = (TaskType.TOKEN_CLS, TaskType.SEQ_CLS)
# Options seqft sets itself; a recipe that sets them would be overwritten or break loading.
_MANAGED_OPTIONS = ("base_model_name_or_path", "revision", "inference_mode", "peft_version", "auto_mapping")
# LoRA initialisations that need a pass of their own before the model is wrapped, which seqft does not run: without it
# peft errors (corda) or silently starts from a plain LoRA init (lora_ga), and a reloaded checkpoint would not get the
# base weights these methods rewrite.
_PREPROCESSED_INITS = {"corda": "peft.preprocess_corda", "lora_ga": "peft.preprocess_loraga"}
_RANDOMISED_INIT_SEED = 0
"""Seed of `pissa_niter_N`'s randomised SVD, at wrapping and again at loading (see `_new_peft_model`)."""

# Encoder families peft 0.21 has no default target modules for, in the same spirit as peft's tables (attention
# query/value for LoRA-like methods; key, value and the feed-forward output for IA3). Looked up after peft's own table.
_LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "albert": ["query", "value"],
    "modernbert": ["Wqkv"],
}
_IA3_TARGETS = {  # family: (target_modules, feedforward_modules)
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "electra": (["key", "value", "output.dense"], ["output.dense"]),
    "albert": (["key", "value", "ffn_output"], ["ffn_output"]),
    "modernbert": (["Wqkv", "mlp.Wo"], ["mlp.Wo"]),
}


# ---------------------------------------------------------------------------------------------------------------
# Configs


def _peft_type(value) -> PeftType:
    name = str(value.value if isinstance(value, PeftType) else value).strip().upper().replace("-", "_")
    try:
        peft_type = PeftType(name)
    except ValueError:
        known = sorted(t.value for t in PEFT_TYPE_TO_CONFIG_MAPPING)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise RecipeError(
            f"peft_config: unknown peft_type {value!r}.{hint} peft {_peft_version()} knows: {', '.join(known)}."
        ) from None
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
    prompt_learning = config_cls is not None and issubclass(config_cls, PromptLearningConfig)
    if peft_type == PeftType.ADALORA:
        raise RecipeError(
            "peft_config: ADALORA reallocates ranks through peft's update_and_allocate after every optimiser step and "
            "adds an orthogonality term in the model's forward; SeqFTTrainer runs neither, so it would train as plain "
            "LoRA at init_r. Use LORA (with r, lora_alpha, use_rslora ...)."
        )
    if config_cls is None or peft_type in _DECODER_ONLY or (prompt_learning and peft_type not in _PROMPT_TYPES):
        supported = ", ".join(t.value for t in _PROMPT_TYPES)
        raise RecipeError(
            f"peft_config: peft_type '{peft_type.value}' does not apply to encoders in seqft (it is specific to "
            f"decoders or task ids). Use an adapter method (LORA, IA3, LOHA, ...) or one of {supported}."
        )
    return peft_type


def _peft_version() -> str:
    import peft

    return peft.__version__


def _options_of(config_cls) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls) if f.init and f.name not in ("peft_type",)]


@functools.cache
def _field_types(config_cls) -> dict:
    """Option name -> resolved annotation of a peft config dataclass (also of nested ones such as `EvaConfig`)."""
    try:
        return typing.get_type_hints(config_cls)
    except (NameError, TypeError):  # an annotation that does not resolve at runtime: nothing to check against
        return {}


def _json_kind(value) -> str:
    """What a JSON value is, in a message (bool before int: a bool is an int in Python)."""
    kinds = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "a list", dict: "an object"})
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), type(value).__name__)


def _list_element(annotation):
    """The element annotation of the list type an annotation allows (`list[str]` in `Optional[list[str] | str]`)."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    for member in members or (annotation,):
        if typing.get_origin(member) is list and typing.get_args(member):
            return typing.get_args(member)[0]
    return None


def _nested_config(annotation):
    """The config dataclass an option holds (`eva_config`: EvaConfig), when its annotation names exactly one."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    found = [a for a in members or (annotation,) if isinstance(a, type) and dataclasses.is_dataclass(a)]
    return found[0] if len(found) == 1 else None


def _check_option_types(options: dict, config_cls, prefix: str = "peft_config") -> None:
    """Each option's value against the annotation of its field in `config_cls` (and of nested config dataclasses),
    so that `"r": "4"` fails here, naming the option, instead of as a TypeError deep inside peft."""
    annotations = _field_types(config_cls)
    # peft writes some options as `num_virtual_tokens: int = None` (None: filled in later), so null is what they
    # default to even where the annotation does not say so
    default_none = {f.name for f in dataclasses.fields(config_cls) if f.default is None}
    for key, value in options.items():
        if key not in annotations:
            continue  # unknown options are reported by name (check_peft_spec) or by the config's constructor
        annotation = annotations[key]
        if not (value is None and key in default_none) and not json_fits(value, annotation, strict_values=False):
            element = _list_element(annotation) if isinstance(value, list) else None
            if element is not None:  # a list where a list is expected: name the entry that does not fit
                index = next((i for i, v in enumerate(value) if not json_fits(v, element, strict_values=False)), None)
                if index is not None:
                    key, value, annotation = f"{key}[{index}]", value[index], element
            hint = ""
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                if (
                    parsed is not None
                    and not isinstance(parsed, str)
                    and json_fits(parsed, annotation, strict_values=False)
                ):
                    hint = f" Write it without quotes: {json.dumps(parsed)}."
            raise RecipeError(
                f"{prefix}.{key} = {json.dumps(value, default=str)} is {_json_kind(value)}; expected "
                f"{describe_type(annotation)}.{hint}"
            )
        nested = _nested_config(annotation) if isinstance(value, dict) else None
        if nested is not None:
            _check_option_types(value, nested, f"{prefix}.{key}")


def check_peft_spec(spec: dict | PeftConfig, *, merge: bool = False) -> type[PeftConfig]:
    """Validate a recipe's `peft_config` without a model; returns the peft config class.

    Raises `RecipeError` for an unknown or encoder-incompatible `peft_type`, an option the method's config class does
    not have (naming the closest option and listing all of them), an option whose JSON value does not fit the type of
    its field in that class (`"r": "4"`: naming `peft_config.r`, the value and the expected type; nested config
    objects such as `eva_config` likewise), and for `merge=True` with a prompt-learning method, whose virtual tokens
    or prefix have no weights to merge into.
    """
    if isinstance(spec, PeftConfig):
        peft_type, config_cls = _peft_type(spec.peft_type), type(spec)
    else:
        if not isinstance(spec, dict):
            raise RecipeError(f"peft_config must be a JSON object with 'peft_type', got {type(spec).__name__}.")
        if "peft_type" not in spec:
            raise RecipeError('peft_config needs a "peft_type", e.g. {"peft_type": "LORA", "r": 16}.')
        peft_type = _peft_type(spec["peft_type"])
        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
        valid = _options_of(config_cls)
        for key in spec:
            if key == "peft_type":
                continue
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise RecipeError(
                    f"peft_config: unknown option '{key}' for peft_type '{peft_type.value}' "
                    f"({config_cls.__name__}).{hint} Valid options: {', '.join(sorted(valid))}."
                )
            if key in _MANAGED_OPTIONS:
                raise RecipeError(f"peft_config: '{key}' is set by seqft from the model; remove it from the recipe.")
        _check_option_types({k: v for k, v in spec.items() if k != "peft_type"}, config_cls)
        task_type = spec.get("task_type")
        if task_type is not None and str(task_type).upper() not in {t.value for t in _TASK_TYPES}:
            raise RecipeError(
                f"peft_config: task_type {task_type!r} is not a sequence-labelling task: use TOKEN_CLS or SEQ_CLS "
                "(or leave it out: seqft infers it from the model)."
            )
    init = spec.get("init_lora_weights") if isinstance(spec, dict) else getattr(spec, "init_lora_weights", None)
    if isinstance(init, str) and init in _PREPROCESSED_INITS:
        raise RecipeError(
            f"peft_config: init_lora_weights {init!r} needs {_PREPROCESSED_INITS[init]} to run over the data "
            "before the model is wrapped, which seqft does not do (and a reloaded checkpoint would miss the base "
            'weights it rewrites). Use "eva" (a data-driven initialisation that seqft runs on the training set), '
            '"pissa", "olora" or true.'
        )
    if merge and peft_type in _PROMPT_TYPES:
        raise RecipeError(
            f"merge_adapter: peft_type '{peft_type.value}' cannot be merged into the base weights (its virtual tokens "
            "are extra inputs, not a weight update). Set merge_adapter to false, or use LORA or IA3."
        )
    return config_cls


def _unwrap(model: nn.Module) -> nn.Module:
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _encoder_of(model: nn.Module) -> nn.Module | None:
    """The pretrained encoder inside a task model: its `base_model_prefix` submodule (`bert`, `encoder`, ...)."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    encoder = getattr(model, prefix, None) if prefix else None
    return encoder if isinstance(encoder, nn.Module) and encoder is not model else None


def head_modules(model: nn.Module) -> list[str]:
    """Names of the task model's children outside the encoder that hold parameters, in model order.

    `classifier` for BERT-style token classifiers, `classifier` and `crf` for seqft's CRF model, `pre_classifier` and
    `classifier` for DistilBERT sequence classifiers, `pooler` and `classifier` for DeBERTa's. These are trained from
    scratch (or for the task) and must be trained and saved with any adapter.
    """
    model = _unwrap(model)
    encoder = _encoder_of(model)
    if encoder is None:
        raise RecipeError(
            f"{type(model).__name__} has no encoder submodule named by `base_model_prefix`, so seqft cannot tell its "
            "task head from its encoder. Set `modules_to_save` in peft_config to the head's module names."
        )
    loose = [name for name, _ in model.named_parameters(recurse=False)]
    if loose:
        raise RecipeError(
            f"{type(model).__name__} holds parameters outside any submodule ({', '.join(loose)}); peft can only train "
            "and save whole modules with an adapter. Move them into a submodule."
        )
    return [
        name
        for name, child in model.named_children()
        if child is not encoder and next(child.parameters(), None) is not None
    ]


def _encoder_config(model: nn.Module):
    encoder = _encoder_of(_unwrap(model))
    return getattr(encoder, "config", None) or getattr(_unwrap(model), "config", None)


def _infer_task_type(model: nn.Module) -> TaskType:
    model = _unwrap(model)
    names = [type(model).__name__, *(getattr(getattr(model, "config", None), "architectures", None) or [])]
    if any(name.endswith("ForSequenceClassification") for name in names):
        return TaskType.SEQ_CLS
    return TaskType.TOKEN_CLS


def _norm_names(model: nn.Module) -> list[str] | None:
    """LN_TUNING's default targets: the names of the encoder's normalisation layers (`LayerNorm` in BERT)."""
    encoder = _encoder_of(_unwrap(model))
    found = {
        name.rsplit(".", 1)[-1]
        for name, module in (encoder.named_modules() if encoder is not None else ())
        if name and (isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm")))
    }
    return sorted(found) or None


def _default_targets(peft_type: PeftType, family: str | None) -> tuple[list[str] | str | None, list[str] | None]:
    """(target_modules, feedforward_modules) for an encoder family: peft's table for the method, then seqft's."""
    if peft_type == PeftType.IA3:
        if family in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
            return (
                list(TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[family]),
                list(TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[family]),
            )
        return _IA3_TARGETS.get(family, (None, None))
    table = getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type), "target_module_mapping", None) or {}
    targets = table.get(family)
    if targets is None:
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(family) or _LORA_TARGETS.get(family)
    return (targets if isinstance(targets, str) or targets is None else list(targets)), None


def build_peft_config(spec: dict | PeftConfig, model: nn.Module) -> PeftConfig:
    """A peft config for `model` from a recipe dict (`{"peft_type": "LORA", "r": 16, ...}`, type case-insensitive)
    or a `PeftConfig`. Returns a new object; `spec` is not modified.

    Filled in when not given: `task_type` (SEQ_CLS for a `*ForSequenceClassification` model, else TOKEN_CLS),
    `target_modules` and IA3's `feedforward_modules` for the encoder family, prompt learning's `num_virtual_tokens`
    (20), `num_layers`, `token_dim` and `num_attention_heads` (from the encoder's config, which for seqft's CRF model
    is nested in the model's; `token_dim` of prompts that join the word embeddings is their width, `embedding_size`
    where ALBERT and ELECTRA-small keep it below `hidden_size`) and P-tuning's `encoder_hidden_size`.
    `modules_to_save` always gets every head module (`head_modules`), after any the spec names.
    """
    config_cls = check_peft_spec(spec)
    if isinstance(spec, PeftConfig):
        config = spec
    else:
        options = {key: value for key, value in spec.items() if key != "peft_type"}
        if isinstance(options.get("task_type"), str):
            options["task_type"] = options["task_type"].upper()
        config = _construct(config_cls, **copy.deepcopy(options))

    changes = {"task_type": TaskType(config.task_type) if config.task_type else _infer_task_type(model)}
    if changes["task_type"] not in _TASK_TYPES:
        raise RecipeError(f"peft_config: task_type '{config.task_type}' is not TOKEN_CLS or SEQ_CLS.")
    if changes["task_type"] != _infer_task_type(model):  # peft would wrap (and reload) it as the other task
        raise RecipeError(
            f"peft_config: task_type '{changes['task_type'].value}' does not fit {type(_unwrap(model)).__name__} "
            f"({_infer_task_type(model).value}): remove task_type (seqft infers it from the model)."
        )
    encoder_config = _encoder_config(model)
    if config.is_prompt_learning:
        changes.update(_prompt_sizes(config, encoder_config))
    else:
        family = getattr(encoder_config, "model_type", None)
        targets, feedforward = _default_targets(PeftType(config.peft_type), family)
        if PeftType(config.peft_type) == PeftType.LN_TUNING:  # the encoder's norms: LoRA's linear layers are not
            targets = _norm_names(model)
        if getattr(config, "target_modules", False) is None and not getattr(config, "target_parameters", None):
            if targets is None:
                raise RecipeError(
                    f"peft_config: no default target_modules for encoder type '{family}' and peft_type "
                    f"'{config.peft_type.value}'. Name the encoder's linear layers to adapt, e.g. "
                    '"target_modules": ["query", "value"].'
                )
            changes["target_modules"] = targets
        if getattr(config, "feedforward_modules", False) is None:  # IA3: must be a subset of target_modules
            chosen = changes.get("target_modules", config.target_modules)
            changes["feedforward_modules"] = [
                m for m in feedforward or [] if not isinstance(chosen, str) and m in chosen
            ]
    if hasattr(config, "modules_to_save"):
        try:
            heads = head_modules(model)
        except RecipeError:
            if not config.modules_to_save:
                raise
            heads = []
        changes["modules_to_save"] = list(dict.fromkeys([*(config.modules_to_save or []), *heads]))
    # a new object (the spec's own config is never touched), checked again by peft's __post_init__
    built = _construct(dataclasses.replace, copy.deepcopy(config), **changes)
    _check_module_names(
        built,
        model,
        user_targets="target_modules" not in changes,
        user_modules_to_save=getattr(config, "modules_to_save", None) or [],
    )
    return built


def _names(value) -> list[str]:
    """A recipe's module-name list in its own order (peft turns lists into sets)."""
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value)


def _matches(key: str, **options) -> bool:
    """peft's own matching rule (`check_target_module_exists`) for one module name and these options only: a list
    entry matches a name equal to it or ending in "." + entry, a string is a regular expression for the whole name;
    `layers_to_transform` keeps the modules in those blocks (numbered where `layers_pattern` says); excluded modules
    and modules to save do not match."""
    from peft.tuners.tuners_utils import check_target_module_exists

    defaults = dict(
        target_modules=None,
        exclude_modules=None,
        modules_to_save=None,
        target_parameters=None,
        layers_to_transform=None,
        layers_pattern=None,
    )
    return bool(check_target_module_exists(types.SimpleNamespace(**{**defaults, **options}), key))


def _adaptable_modules(model: nn.Module) -> list[str]:
    """Full names of the layers an adapter can target (nn.Linear, transformers' Conv1D), inside the encoder when
    there is one, as peft sees them (relative to `model`)."""
    from transformers.pytorch_utils import Conv1D

    encoder = _encoder_of(model)
    inside = {id(m) for m in encoder.modules()} if encoder is not None else None
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, Conv1D)) and (inside is None or id(m) in inside)
    ]


def _last_names(names) -> list[str]:
    """The distinct last components of module names, in order: `query, key, value, dense` for BERT's layers."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in names))


def _unmatched_error(option: str, unmatched: list[str], candidates: list[str], model: nn.Module, rule: str):
    suggestions = []
    for entry in unmatched:
        head, dot, last = entry.rpartition(".")
        close = difflib.get_close_matches(last, candidates, n=1, cutoff=0.6)
        suggestions.append(f"'{entry}'" + (f" (did you mean '{head}{dot}{close[0]}'?)" if close else ""))
    one = len(unmatched) == 1
    return RecipeError(
        f"peft_config.{option}: {', '.join(suggestions)} {'matches' if one else 'match'} no module of "
        f"{type(model).__name__} ({rule}). Fix or remove {'it' if one else 'them'} (peft skips an entry that "
        f"matches nothing without a word). Candidates in this model: {', '.join(candidates)}."
    )


def _check_module_names(config: PeftConfig, model: nn.Module, *, user_targets: bool, user_modules_to_save) -> None:
    """Fail where peft would quietly do less than the recipe says, or fail with a bare NoMatchingPeftModuleError.

    * every entry of a `target_modules` or `exclude_modules` list must match a module (a misspelt entry in a list is
      otherwise ignored, and the adapter silently covers fewer layers); a `target_modules` regular expression must
      match at least one;
    * every `layers_to_transform` block must hold a targeted module;
    * every `modules_to_save` entry of the recipe must end the name of a module (peft's rule for it);
    * after exclusions, something must be left to adapt.
    """
    if config.is_prompt_learning:
        return
    model = _unwrap(model)
    keys = [name for name, _ in model.named_modules() if name]
    adaptable = _adaptable_modules(model)
    example = adaptable[0] if adaptable else keys[-1]
    rule = f'an entry matches a module whose name equals it or ends in "." + entry, as in "{example}"'
    targets = getattr(config, "target_modules", None)
    regex = user_targets and isinstance(targets, str) and targets != INCLUDE_LINEAR_LAYERS_SHORTHAND
    if regex and not any(_matches(key, target_modules=targets) for key in keys):
        raise RecipeError(
            f"peft_config.target_modules: the regular expression {targets!r} matches no module name of "
            f"{type(model).__name__} (a string is a regular expression for whole names such as '{example}'; for "
            f"plain names use a list, e.g. {json.dumps(_last_names(adaptable)[:2])}). Candidates in this model: "
            f"{', '.join(_last_names(adaptable))}."
        )
    lists = {"exclude_modules": getattr(config, "exclude_modules", None)}
    if user_targets:
        lists = {"target_modules": targets, **lists}
    for option, entries in lists.items():
        if entries is None or isinstance(entries, str):
            continue
        unmatched = [e for e in _names(entries) if not any(_matches(key, target_modules=[e]) for key in keys)]
        if unmatched:
            raise _unmatched_error(option, unmatched, _last_names(adaptable), model, rule)
    if user_modules_to_save:
        every = [name for name, _ in model.named_modules(remove_duplicate=False) if name]
        unmatched = [e for e in user_modules_to_save if not any(name.endswith(e) for name in every)]
        if unmatched:
            holders = (
                n for n, m in model.named_modules() if n and next(m.parameters(recurse=False), None) is not None
            )
            raise _unmatched_error(
                "modules_to_save",
                unmatched,
                _last_names(holders),
                model,
                "an entry matches every module whose name ends in it",
            )
    if targets is None or isinstance(targets, str):
        return
    layers = getattr(config, "layers_to_transform", None)
    pattern = getattr(config, "layers_pattern", None)
    if layers is not None and layers != []:
        wanted = [layers] if isinstance(layers, int) else list(layers)
        targeted = [key for key in keys if _matches(key, target_modules=targets)]

        def in_layer(index: int) -> bool:
            return any(
                _matches(k, target_modules=targets, layers_to_transform=[index], layers_pattern=pattern)
                for k in targeted
            )

        missing = [index for index in wanted if not in_layer(index)]
        found = [index for index in range(len(targeted)) if in_layer(index)] if missing else []
        if missing and not found:
            name = targeted[0] if targeted else example
            parts = name.split(".")
            listed = next((parts[i - 1] for i in range(1, len(parts)) if parts[i].isdigit()), None)
            if pattern and listed:
                raise RecipeError(
                    f"peft_config.layers_pattern: {pattern!r} numbers no layer of {type(model).__name__}: it names "
                    f"the module list before the layer number, as {listed!r} in '{name}'."
                )
            raise RecipeError(
                f"peft_config.layers_to_transform: no module named by target_modules sits in a numbered layer of "
                f"{type(model).__name__} (as '{name}' shows); remove layers_to_transform."
            )
        if missing:
            raise RecipeError(
                f"peft_config.layers_to_transform: no module named by target_modules is in layer "
                f"{', '.join(map(str, missing))}; the targeted modules of {type(model).__name__} are in layers "
                f"{found[0]}..{found[-1]} (counted from 0)."
            )
    options = {
        name: getattr(config, name, None)
        for name in ("target_modules", "exclude_modules", "modules_to_save", "layers_to_transform", "layers_pattern")
    }
    if not getattr(config, "target_parameters", None) and not any(_matches(key, **options) for key in keys):
        raise RecipeError(
            "peft_config: nothing is left to adapt: every module that target_modules names is excluded by "
            "exclude_modules or modules_to_save (the task head is always in modules_to_save). Check both lists."
        )


def _construct(factory, *args, **kwargs) -> PeftConfig:
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"peft_config: {err}") from None


def virtual_tokens(spec) -> int:
    """How many virtual tokens a recipe's `peft_config` puts before each input (prompt learning), else 0."""
    if spec is None:
        return 0
    config = spec if isinstance(spec, PeftConfig) else None
    peft_type = config.peft_type if config is not None else spec.get("peft_type")
    if _peft_type(peft_type) not in (PeftType.PREFIX_TUNING, PeftType.P_TUNING, PeftType.PROMPT_TUNING):
        return 0
    number = config.num_virtual_tokens if config is not None else spec.get("num_virtual_tokens")
    return number or DEFAULT_NUM_VIRTUAL_TOKENS


def _prompt_sizes(config: PeftConfig, encoder_config) -> dict:
    sizes = {"num_virtual_tokens": config.num_virtual_tokens or DEFAULT_NUM_VIRTUAL_TOKENS}
    for option, attribute in (
        ("num_layers", "num_hidden_layers"),
        ("token_dim", "hidden_size"),
        ("num_attention_heads", "num_attention_heads"),
    ):
        value = getattr(config, option)
        if value is None:
            value = getattr(encoder_config, attribute, None)  # DistilBERT's attribute_map covers n_layers, dim, ...
            if not isinstance(value, int):
                raise RecipeError(
                    f"peft_config: cannot read '{attribute}' from the encoder's config "
                    f"({type(encoder_config).__name__}); set '{option}' in peft_config."
                )
        sizes[option] = value
    width = getattr(encoder_config, "embedding_size", None)
    if config.token_dim is None and config.peft_type != PeftType.PREFIX_TUNING and isinstance(width, int):
        # prompts join the word embeddings, which ALBERT and ELECTRA-small keep narrower than the hidden states
        sizes["token_dim"] = width
    if getattr(config, "encoder_hidden_size", False) is None:  # P-tuning's prompt encoder
        sizes["encoder_hidden_size"] = sizes["token_dim"]
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# The wrapped model


class _SavesBaseConfig:
    """Saves the task model's config beside the adapter, so `load_adapter_model` can rebuild the base model."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        # peft's "auto" re-reads the base config (from the Hub, or a local path) to see whether the vocabulary was
        # resized; seqft never resizes it, and offline or with a pkg:// path the check can only warn.
        kwargs.setdefault("save_embedding_layers", False)
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            base = self.get_base_model()
            config = copy.deepcopy(base.config)
            # the task model's class: a config read from the encoder's folder still names the encoder's (BertModel)
            config.architectures = [type(base).__name__]
            config.save_pretrained(os.path.join(save_directory, BASE_CONFIG_DIR))


class SeqFTPeftModelForSequenceClassification(_SavesBaseConfig, PeftModelForSequenceClassification):
    """peft's sequence-classification model, saving the base model's config with the adapter."""


class SeqFTPeftModelForTokenClassification(_SavesBaseConfig, PeftModelForTokenClassification):
    """peft's token-classification model, saving the base model's config with the adapter, with prompt learning
    applied at the encoder so the task model's forward (head, CRF, loss) sees only the real tokens."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        task_ids=None,
        **kwargs,
    ):
        if not self.active_peft_config.is_prompt_learning:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                labels=labels,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=return_dict,
                task_ids=task_ids,
                **kwargs,
            )
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        optional = {
            "labels": labels,
            "output_attentions": output_attentions,
            "output_hidden_states": output_hidden_states,
            "return_dict": return_dict,
        }
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        with self._prompt_in_encoder(batch_size):
            return self.base_model(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )

    @contextlib.contextmanager
    def _prompt_in_encoder(self, batch_size: int):
        config = self.active_peft_config
        encoder = _encoder_of(self.base_model)
        num_virtual = config.num_virtual_tokens
        is_prefix = config.peft_type == PeftType.PREFIX_TUNING
        positional = list(inspect.signature(encoder.forward).parameters)
        cache_argument = _cache_argument(encoder)

        def add_prompt(module, args, kwargs):
            kwargs = {**dict(zip(positional, args)), **kwargs}
            tokens = kwargs.get("input_ids")
            reference = tokens if tokens is not None else kwargs["inputs_embeds"]
            mask = kwargs.get("attention_mask")
            if mask is None:
                mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
            # shape: (batch, num_virtual + seq_len)
            kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], num_virtual), mask], dim=1)
            if is_prefix:
                kwargs[cache_argument] = self.get_prompt(batch_size)
                return (), kwargs
            if kwargs.get("position_ids") is not None:
                raise SeqFTError(
                    f"{config.peft_type.value} prepends virtual tokens; explicit position_ids are not supported."
                )
            embeds = kwargs.pop("inputs_embeds", None)
            if embeds is None:
                embeds = self.word_embeddings(kwargs.pop("input_ids"))
            kwargs["input_ids"] = None
            prompts = self.get_prompt(batch_size).to(embeds.dtype)  # shape: (batch, num_virtual, hidden)
            kwargs["inputs_embeds"] = torch.cat([prompts, embeds], dim=1)
            if kwargs.get("token_type_ids") is not None:
                token_types = kwargs["token_type_ids"]
                kwargs["token_type_ids"] = torch.cat([token_types.new_zeros(batch_size, num_virtual), token_types], 1)
            return (), kwargs

        def drop_virtual_positions(module, args, output):  # (attention maps, if requested, keep them)
            if isinstance(output, tuple):
                return (output[0][:, num_virtual:], *output[1:])
            output["last_hidden_state"] = output["last_hidden_state"][:, num_virtual:]
            if output.get("hidden_states") is not None:
                output["hidden_states"] = tuple(h[:, num_virtual:] for h in output["hidden_states"])
            return output

        handles = [encoder.register_forward_pre_hook(add_prompt, with_kwargs=True)]
        if not is_prefix:
            handles.append(encoder.register_forward_hook(drop_virtual_positions))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


_PEFT_MODEL_CLASSES = {
    TaskType.TOKEN_CLS: SeqFTPeftModelForTokenClassification,
    TaskType.SEQ_CLS: SeqFTPeftModelForSequenceClassification,
}


def _check_prompt_support(model: nn.Module, config: PeftConfig) -> None:
    """Fail with a clear message where peft's prompt learning would fail obscurely (or, for a CRF, silently)."""
    if not config.is_prompt_learning:
        return
    if getattr(model.config.get_text_config(), "vocab_size", None) is None:
        raise RecipeError(
            f"{config.peft_type.value}: peft finds the word embeddings by the model config's `vocab_size`, and "
            f"{type(model.config).__name__} has none. Use LORA or IA3 with this model."
        )
    if config.task_type != TaskType.TOKEN_CLS:
        if config.peft_type == PeftType.PREFIX_TUNING:
            raise RecipeError(
                "PREFIX_TUNING on a sequence classifier: peft hands the prefix to the model as `past_key_values`, "
                f"which {type(model).__name__} does not take (it failed at the first step). Use P_TUNING or "
                "PROMPT_TUNING (virtual tokens), LORA or IA3."
            )
        return
    encoder = _encoder_of(model)
    if encoder is None:
        raise RecipeError(f"{config.peft_type.value} needs the model's encoder (`base_model_prefix`); none found.")
    if config.peft_type == PeftType.PREFIX_TUNING and _cache_argument(encoder) is None:
        raise RecipeError(
            f"PREFIX_TUNING feeds the prefix to the encoder as its key/value cache (`cache` or `past_key_values`), "
            f"which {type(encoder).__name__} does not accept. Use LORA, IA3 or P_TUNING with this encoder."
        )


def _cache_argument(encoder: nn.Module) -> str | None:
    """The encoder's key/value cache argument: `cache` (recent transformers 5.x), `past_key_values` (older), or None."""
    parameters = inspect.signature(encoder.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def _portable_path(path: str | None) -> str | None:
    """`pkg://package/sub/path` for a directory inside an installed (regular) package, the form recipes use for
    models shipped on PyPI, so an adapter's `base_model_name_or_path` does not depend on this machine's
    site-packages. Other paths, and packages importable only from the working directory, are returned unchanged."""
    if not path or path.startswith(PKG_PREFIX) or not os.path.isabs(path):
        return path
    target = Path(path).resolve()
    cwd = Path.cwd().resolve()
    for entry in {Path(e).resolve() for e in sys.path if e and os.path.isdir(e)} - {cwd}:
        if not target.is_relative_to(entry) or len(target.relative_to(entry).parts) < 2:
            continue
        relative = target.relative_to(entry)
        package = relative.parts[0]
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
        # a regular package (namespace packages have no origin) found at this very sys.path entry
        if spec is not None and spec.origin is not None and Path(spec.origin).resolve().parent == entry / package:
            return PKG_PREFIX + relative.as_posix()
    return path


def _base_model_path(model: nn.Module) -> str | None:
    """Where the pretrained weights came from: the model's own name_or_path, else its encoder's (seqft's CRF model
    is assembled around an encoder loaded with `from_pretrained`)."""
    encoder = _encoder_of(model)
    path = getattr(model, "name_or_path", None) or getattr(encoder, "name_or_path", None) or None
    return _portable_path(path)


STUDENT_BASE_DIR = "student_base"


def save_student_base(model: nn.Module, output_dir: str, main_process: bool = True, folder: str | None = None) -> str:
    """Save the encoder of a student built from selected blocks (`distill.build_student_from_teacher`) to
    `output_dir/student_base` and name it as the model's source; returns that path. `folder`: write into this
    folder of `output_dir` instead (staging, renamed to `student_base` by the caller), naming the final path.

    Such a student's base exists on no disk: without this, its adapter would record the teacher's (or the encoder's)
    folder as the base it adapts, and `load_adapter_model` / `seqft.predict` would rebuild the wrong encoder (all its
    blocks, or the teacher's CRF checkpoint read as an encoder) without an error. Call it before `wrap_model`, on
    every rank (ZeRO-3 gathers the weights); only `main_process` writes.
    """
    path = os.path.abspath(os.path.join(output_dir, STUDENT_BASE_DIR))
    written = os.path.abspath(os.path.join(output_dir, folder)) if folder else path
    encoder = _encoder_of(model) or model
    partitioned = [p for p in encoder.parameters() if hasattr(p, "ds_id")]  # loaded under DeepSpeed ZeRO-3
    if partitioned:
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)
    else:
        gathered = contextlib.nullcontext()
    with gathered:
        if main_process:
            encoder.save_pretrained(written)
    for module in {id(m): m for m in (model, encoder)}.values():
        module.name_or_path = module.config._name_or_path = path
    return path


def trainable_parameters(model: nn.Module) -> dict:
    """{"trainable": n, "total": n, "share": trainable / total} over the model's parameters (each counted once;
    DeepSpeed ZeRO-3 partitions by their full size). With peft, `total` includes the frozen originals of the
    `modules_to_save` copies, as peft's own `print_trainable_parameters` does."""
    trainable = total = 0
    for param in model.parameters():
        count = getattr(param, "ds_numel", None) or param.numel()
        total += count
        if param.requires_grad:
            trainable += count
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}


def _new_peft_model(model: nn.Module, config: PeftConfig) -> PeftModel:
    """seqft's peft model class for the task around `model`.

    PiSSA and OLoRA move the adapter's initial value out of the base weights, and peft redoes that when a checkpoint
    is loaded onto the pretrained encoder. PiSSA's fast variant (`pissa_niter_N`) does it with a randomised SVD, so
    it runs under a fixed seed: otherwise the reloaded base differs from the trained one (logits moved by ~1e-3 on a
    tiny BERT) and the reloaded model no longer predicts what the trained one did.
    """
    model_cls = _PEFT_MODEL_CLASSES[config.task_type]
    if not str(getattr(config, "init_lora_weights", "")).lower().startswith("pissa_niter_"):
        return model_cls(model, config)
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(_RANDOMISED_INIT_SEED)
        return model_cls(model, config)


def wrap_model(model: nn.Module, spec: dict | PeftConfig) -> PeftModel:
    """Wrap `model` with the adapter `spec` describes (see `build_peft_config`); the head and CRF are trainable.

    Logs the trainable-parameter count (also available as `trainable_parameters(peft_model)`).
    """
    if hasattr(model, "peft_config"):
        raise RecipeError("The model already carries a peft adapter; pass the unwrapped model with peft_config.")
    config = build_peft_config(spec, model)
    _check_prompt_support(model, config)
    config.base_model_name_or_path = _base_model_path(model)
    peft_model = _new_peft_model(model, config)
    # peft appends its own ["classifier", "score"] to modules_to_save; keep the saved list readable and true (only
    # modules the model has)
    stored = peft_model.peft_config["default"]
    if getattr(stored, "modules_to_save", None):
        names = [name for name, _ in model.named_modules()]
        stored.modules_to_save = [
            m for m in dict.fromkeys(stored.modules_to_save) if any(n == m or n.endswith("." + m) for n in names)
        ]
    counts = trainable_parameters(peft_model)
    logger.info(
        f"peft {config.peft_type.value}: {counts['trainable']:,} trainable parameters of {counts['total']:,} "
        f"({100 * counts['share']:.3f}%); trained and saved with the adapter: {', '.join(stored.modules_to_save or [])}"
    )
    return peft_model


def initialize_from_data(trainer, model=None) -> None:
    """EVA, when the adapter asks for it (`init_lora_weights: "eva"`, options in `eva_config`); nothing otherwise.

    Explained Variance Adaptation starts each LoRA A matrix from the principal directions of its layer's inputs and
    spreads the rank budget (`r` times the number of adapted layers) over the layers by explained variance, up to
    `eva_config.rho * r` each; B starts at zero, so the model starts as the pretrained one and checkpoints reload
    onto the untouched encoder. peft leaves this to the caller (without it "eva" trains from a plain LoRA init);
    seqft runs it here, before the first step, on the training set in order (`eval` batch size, the trainer's
    collator), on the positions that have a label when `eva_config.use_label_mask` (peft's default) is on, and
    stops when every layer's components have converged. On several ranks each takes its shard and the inputs are
    gathered, so all ranks compute the same directions. `model`: the trainer's unless given (a `model_init` model).
    """
    from peft.tuners.lora.eva import initialize_lora_eva_weights
    from transformers.integrations import is_deepspeed_zero3_enabled

    model = trainer.model if model is None else model
    config = model.peft_config["default"]
    if getattr(config, "init_lora_weights", None) != "eva":  # prompt-learning configs have no such option
        return
    if trainer.train_dataset is None:
        raise RecipeError('peft_config: init_lora_weights "eva" starts from the training set; there is none.')
    if is_deepspeed_zero3_enabled():
        raise RecipeError(
            'peft_config: init_lora_weights "eva" needs the whole model on each rank for its pass over the data, '
            "and DeepSpeed ZeRO-3 partitions it. Use ZeRO-2, or another init_lora_weights."
        )

    def forward(model, inputs):  # the encoder's activations are what counts: no loss, no labels
        return model(**{key: value for key, value in inputs.items() if key != "labels"})

    def positions(inputs, peft_config):  # (N, 2) indices of the tokens whose layer inputs enter the SVD
        mask = inputs["attention_mask"].bool()
        labels = inputs.get("labels")
        if peft_config.eva_config.use_label_mask and labels is not None and labels.shape == mask.shape:
            mask = mask & (labels != peft_config.eva_config.label_mask_value)  # token labels; not a sentence's
        return mask.nonzero()

    initialize_lora_eva_weights(
        model,
        trainer.get_eval_dataloader(trainer.train_dataset),
        forward_fn=forward,
        prepare_model_inputs_fn=positions,
        gather_distributed_inputs=trainer.args.world_size > 1,
        show_progress_bar=not trainer.args.disable_tqdm,
    )
    counts = trainable_parameters(model)
    ranks = sorted(
        {m.lora_A["default"].weight.shape[0] for m in model.modules() if "default" in getattr(m, "lora_A", {})}
    )
    logger.info(
        f"EVA initialised the LoRA adapters on the training set: ranks {ranks[0]}-{ranks[-1]} (budget r={config.r} per "
        f"layer); {counts['trainable']:,} trainable parameters ({100 * counts['share']:.3f}%)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Loading and merging


def load_adapter_model(path: str | os.PathLike, *, is_trainable: bool = False, **from_pretrained_kwargs):
    """Rebuild the base model and load a seqft adapter checkpoint (`output_dir` or a `checkpoint-N` folder).

    The encoder weights come from `adapter_config.json`'s `base_model_name_or_path` (a Hub id, a local path or a
    `pkg://` path; a distilled student's `student_base/` is looked for beside the adapter), the task model's
    structure from `path/base_config/config.json`, and the adapter, head and CRF weights from
    `path/adapter_model.safetensors`. Returns the peft model, in eval mode unless `is_trainable`.
    Extra keyword arguments (`cache_dir`, `token`, `revision`, ...) go to the base model's `from_pretrained`.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    path = os.fspath(path)
    adapter_file = os.path.join(path, "adapter_config.json")
    config_file = os.path.join(path, BASE_CONFIG_DIR, "config.json")
    for required in (adapter_file, config_file):
        if not os.path.isfile(required):
            raise SeqFTError(
                f"{path}: no {os.path.relpath(required, path)}; is this an adapter checkpoint saved by seqft?"
            )
    with open(adapter_file, encoding="utf-8") as fh:
        peft_type = _peft_type(json.load(fh)["peft_type"])
    peft_config = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type].from_pretrained(path)
    peft_config.inference_mode = not is_trainable
    base_path = resolve_path(peft_config.base_model_name_or_path)
    if not base_path:
        raise SeqFTError(f"{adapter_file} names no base_model_name_or_path; cannot tell which encoder it adapts.")
    from .configs import missing_local_path

    if os.path.basename(os.path.normpath(base_path)) == STUDENT_BASE_DIR:
        # a student's own blocks travel with its adapter (output_dir/student_base, beside its checkpoint-N folders):
        # found there when the folder was moved, copied or pushed
        beside = (os.path.join(d, STUDENT_BASE_DIR) for d in (path, os.path.dirname(os.path.abspath(path))))
        base_path = next((d for d in beside if os.path.isdir(d)), base_path)
    if missing_local_path(base_path):
        raise SeqFTError(
            f"{adapter_file}: the base model it adapts, {base_path!r}, is not a directory (moved, or a path relative "
            "to where training ran?). Set base_model_name_or_path there to the encoder's folder or Hub id, or use "
            "the run's merged/ model, which needs no base."
        )
    if peft_config.revision is not None:
        from_pretrained_kwargs.setdefault("revision", peft_config.revision)

    config = AutoConfig.from_pretrained(os.path.dirname(config_file))  # seqft_crf is registered by `import seqft`
    if config.model_type == "seqft_crf":
        from .modeling import SeqFTCRFForTokenClassification

        # the CRF model wraps a pretrained encoder: load that, then build the head and CRF (restored below) around it
        # (or, for a run that trained on from an earlier CRF run's folder, the encoder inside it)
        encoder, _ = SeqFTCRFForTokenClassification.load_encoder(
            base_path, config.encoder_config, **from_pretrained_kwargs
        )
        base = SeqFTCRFForTokenClassification(config, encoder=encoder)
    else:
        auto_cls = (
            AutoModelForSequenceClassification
            if peft_config.task_type == TaskType.SEQ_CLS
            else AutoModelForTokenClassification
        )
        base = auto_cls.from_pretrained(base_path, config=config, **from_pretrained_kwargs)

    peft_model = _new_peft_model(base, peft_config)
    peft_model.load_adapter(path, "default", is_trainable=is_trainable)
    return peft_model if is_trainable else peft_model.eval()


def _unwrap_modules_to_save(peft_model) -> None:
    """Put each trained head/CRF copy in place of its `ModulesToSaveWrapper`. peft's IA3 unload assumes every
    wrapped module has a `.weight`, which a CRF has not ('CRF' object has no attribute 'weight')."""
    from peft.utils import ModulesToSaveWrapper

    for name, module in list(peft_model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent_name, _, child = name.rpartition(".")
            parent = peft_model.get_submodule(parent_name) if parent_name else peft_model
            setattr(parent, child, module.modules_to_save[module.active_adapter])


@contextlib.contextmanager
def _whole_models():
    """Inside: models load whole on this process. Under DeepSpeed ZeRO-3, transformers otherwise loads each one
    partitioned across the ranks (zero.Init), which needs every rank to take part."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled() reads
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def merge_after_training(trainer, output_dir: str | os.PathLike, tokenizer=None):
    """`merge_and_save` for the model a run has just trained and saved (`trainer.save_model()`), on the main process.

    Under DeepSpeed ZeRO-3 each rank holds only a shard of every weight (a merge of those would fail on their empty
    local tensors), so the main process merges the adapter the run saved in `trainer.args.output_dir` instead,
    reloaded whole onto the base model (`load_adapter_model`).
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not trainer.is_world_process_zero():
        return None
    if not is_deepspeed_zero3_enabled():
        return merge_and_save(trainer.model, output_dir, tokenizer)
    with _whole_models():
        return merge_and_save(load_adapter_model(trainer.args.output_dir), output_dir, tokenizer)


def merge_and_save(peft_model, output_dir: str | os.PathLike, tokenizer=None):
    """Merge the adapter into a copy of the base weights and save a plain transformers model to `output_dir`.

    The result loads with `AutoModelForTokenClassification.from_pretrained(output_dir)` and
    `pipeline("token-classification", model=output_dir)` without peft; its head and CRF are the trained ones.
    `peft_model` itself is left as it was (the merge works on a copy). Returns the merged model.
    """
    config = peft_model.active_peft_config
    check_peft_spec(config, merge=True)
    model = copy.deepcopy(peft_model)
    _unwrap_modules_to_save(model)
    merged = model.merge_and_unload()
    merged.save_pretrained(output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    logger.info(f"Merged the {config.peft_type.value} adapter into {type(merged).__name__}; saved to {output_dir}")
    return merged
