"""Strict recipe parsing: a JSON recipe supplies defaults, command-line flags override them, unknown keys fail.

    python -m seqft.train recipes/quickstart.json --learning_rate 3e-5 --num_train_epochs 2

Every key must be a field of `ModelArguments`, `DataArguments` or `SeqFTConfig`; a typo gets the closest field
name, a wrong JSON type gets the key, the value and the expected type. `--help` lists every field.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from transformers import HfArgumentParser

from .configs import DataArguments, ModelArguments, SeqFTConfig
from .errors import RecipeError, SeqFTError

DATACLASSES = (ModelArguments, DataArguments, SeqFTConfig)
# Keys that must never be written back out (resolved recipe, model card, logs).
SECRET_KEYS = frozenset({"token", "hub_token"})


def field_types() -> dict[str, object]:
    """Field name -> resolved type annotation, over the three dataclasses."""
    hints = {}
    for cls in DATACLASSES:
        resolved = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                hints[f.name] = resolved[f.name]
    return hints


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {"an integer": "integers", "a number": "numbers", "a string": "strings", "true or false": "booleans"}


def describe_type(tp) -> str:
    """An annotation in a JSON recipe's words: "an integer", "a list of strings or null", "one of 'no', 'steps'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (typing.Union, types.UnionType):
        if any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args):
            args = [a for a in args if a is not str]  # `IntervalStrategy | str` accepts only the enum's values
        return " or ".join(dict.fromkeys(describe_type(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, set, frozenset, tuple, Sequence) or tp in (list, set, frozenset, tuple):
        item = args[0] if args and (origin is not tuple or args[-1] is Ellipsis) else None
        inner = describe_type(item) if item is not None else None
        return f"a list of {_PLURALS.get(inner, inner)}" if inner else "a list"
    if origin is dict or tp is dict:
        return "a JSON object"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a JSON object ({tp.__name__} options)"
    return _KINDS.get(tp, getattr(tp, "__name__", str(tp)))


def json_fits(value, tp, *, strict_values: bool = True) -> bool:
    """Whether a JSON value can stand for annotation `tp`: a bool is not an int, an int is a float, a list stands for
    any sequence or set, an object for a dict or a config dataclass. `strict_values=False` checks Literals and
    `Enum | str` unions by type only, leaving their values to peft (whose Literals name patterns such as
    "pissa_niter_[number of iters]", and which upper-cases task types)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any or tp is object:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and isinstance(value, str) and strict_values:  # `IntervalStrategy | str`: a member's value
            return any(value in {m.value for m in e} for e in enums)
        return any(json_fits(value, a, strict_values=strict_values) for a in args)
    if origin is typing.Literal:
        return value in args if strict_values else any(isinstance(value, type(a)) for a in args)
    if origin in (list, set, frozenset, tuple, Sequence) or tp in (list, set, frozenset, tuple):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:  # a fixed-length tuple: a list of that length
            return len(value) == len(args) and all(
                json_fits(v, a, strict_values=strict_values) for v, a in zip(value, args)
            )
        return not args or all(json_fits(v, args[0], strict_values=strict_values) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict) and (
            len(args) != 2 or all(json_fits(v, args[1], strict_values=strict_values) for v in value.values())
        )
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp} or isinstance(value, tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, (tp, dict))
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not a JSON object: {err.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else " Run `python -m seqft.train --help` to list every field."


def _load_json(path: Path) -> dict:
    def no_duplicates(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise RecipeError(f"{path}: key '{k}' appears twice; keep one.")
            seen[k] = v
        return seen

    if not path.is_file():
        raise RecipeError(f"Recipe file not found: {path}")
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}.") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a JSON object of field names to values, got {type(recipe).__name__}.")
    if set(recipe) == {"recipe", "versions", "data_files"} and isinstance(recipe["recipe"], dict):
        return _as_recorded(recipe, path)  # a resolved output_dir/seqft_recipe.json re-runs as it was
    return recipe


# The files a resolved recipe fingerprints (`seqft.train.resolved_record`), by the recipe key that names each
_RECORDED_FILES = {
    "train": "train_file",
    "validation": "validation_file",
    "test": "test_file",
    "distill_unlabelled": "distill_unlabelled_file",
    "label_names": "label_names_file",
    "teacher_weights": "teacher_model_name_or_path",
}


def _as_recorded(record: dict, path: Path) -> dict:
    """The recipe of a resolved `seqft_recipe.json`. A relative path that does not resolve from this working
    directory is replaced by the absolute path recorded beside it; a file whose contents changed since that run is
    named in a warning (the re-run will not reproduce it)."""
    from .data import fingerprint, fingerprint_weights, resolve_path

    recipe, changed = dict(record["recipe"]), []
    files = record["data_files"] if isinstance(record["data_files"], dict) else {}
    for split, key in _RECORDED_FILES.items():
        entry = files.get(split)
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str) or recipe.get(key) != entry["spec"]:
            continue
        try:
            local = resolve_path(entry["spec"], must_exist=False)
        except SeqFTError:  # a pkg:// path of a package not installed: the run says so
            continue
        if not os.path.exists(local) and isinstance(entry.get("path"), str) and os.path.exists(entry["path"]):
            recipe[key] = local = entry["path"]
        if not os.path.exists(local) or not entry.get("sha256"):
            continue  # a missing file is reported by the run, naming its key
        now = fingerprint_weights(local) if split == "teacher_weights" else fingerprint(local)
        if now is not None and now["sha256"] != entry["sha256"]:
            changed.append(f"'{key}' ({entry['spec']})")
    if changed:
        import logging

        logging.getLogger("seqft").warning(
            f"{path}: {', '.join(changed)} changed since the run that wrote this recipe (its SHA-256 differs): "
            "this run will not reproduce that one."
        )
    return recipe


def check_recipe(recipe: dict, source: str = "recipe") -> None:
    """Unknown keys and wrong JSON types fail here, before any dataclass is built."""
    hints = field_types()
    for key, value in recipe.items():
        if key not in hints:
            raise RecipeError(f"{source}: unknown key '{key}'.{suggest(key, hints)}")
        if not json_fits(value, hints[key]):
            raise RecipeError(
                f"{source}: '{key}' = {json.dumps(value)} is not valid: expected {describe_type(hints[key])}."
                + _TYPE_ADVICE.get((key, json.dumps(value)), "")
            )


# Values users bring from the stock Trainer's Python API, where they are valid
_TYPE_ADVICE = {
    ("resume_from_checkpoint", "true"): ' For the last checkpoint in output_dir (the Trainer\'s True), use "last".',
}


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        DATACLASSES,
        prog="python -m seqft.train",
        description="Fine-tune an encoder from a JSON recipe: python -m seqft.train RECIPE.json [--field value ...]. "
        "Every flag below is also a recipe key.",
        allow_abbrev=False,
    )
    parser.add_argument("recipe", nargs="?", help="JSON recipe whose keys are the fields below.")
    for action in parser._actions:  # dict fields take a JSON object on the command line, e.g. --peft_config '{..}'
        if action.type is dict:
            action.type = _json_object

    def error(message: str):  # one `seqft: error:` line, not argparse's usage block of every field
        raise RecipeError(f"{message.rstrip('.')}. `python -m seqft.train --help` lists every flag.")

    parser.error = error
    return parser


def _json_lists(argv: list[str], known: dict) -> list[str]:
    """A list field's value may be given as in a recipe, `--student_layers '[0, 2, 4]'`, or space-separated,
    `--student_layers 0 2 4` (argparse's way); the JSON form becomes the space-separated one."""
    out = []
    for i, arg in enumerate(argv):
        flag = argv[i - 1] if i and argv[i - 1].startswith("--") else None
        tp = known.get(flag[2:].replace("-", "_")) if flag else None
        origins = {typing.get_origin(a) or a for a in (typing.get_args(tp) or (tp,))} if tp is not None else set()
        # a field that also takes a string (class_weights: "balanced" or a list) is one argparse value: it reads the
        # JSON list itself
        if origins & {list, Sequence} and str not in origins and arg.lstrip().startswith("["):
            try:
                values = json.loads(arg)
            except json.JSONDecodeError as err:
                raise RecipeError(f"{flag}: {arg!r} is not a JSON list ({err.msg}).") from None
            out.extend(v if isinstance(v, str) else json.dumps(v) for v in values)
        else:
            out.append(arg)
    return out


def _nulls(argv: list[str], known: dict) -> tuple[list[str], list[str]]:
    """`--field null` (or `--field=null`) sets a field that may be null to null, as `"field": null` does in a recipe
    (argparse would read the word "null" as a value of the field's type). Returns the other arguments, and those
    fields."""
    rest, nulls, i = [], [], 0
    while i < len(argv):
        name, eq, value = argv[i][2:].partition("=") if argv[i].startswith("--") else ("", "", "")
        key = name.replace("-", "_")
        if not eq and i + 1 < len(argv):
            value = argv[i + 1]
        if name and value == "null" and key in known and type(None) in typing.get_args(known[key]):
            nulls.append(key)
            i += 1 if eq else 2
            continue
        rest.append(argv[i])
        i += 1
    return rest, nulls


def _recipe_argument(argv: Sequence[str]) -> str | None:
    """The positional `.json` argument: not the value of a flag (`--train_file train.json`, `--deepspeed ds.json`),
    which run_ner-style command lines without a recipe pass."""
    known = field_types()
    for i, arg in enumerate(argv):
        if arg.startswith("-") or not arg.endswith(".json"):
            continue
        previous = argv[i - 1] if i else ""
        name = previous[2:].replace("-", "_") if previous.startswith("--") and "=" not in previous else None
        if name is None or known.get(name) is bool:  # after a value, or a bare boolean flag: positional
            return arg
    return None


def parse_recipe(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, SeqFTConfig, dict]:
    """Parse `[RECIPE.json] [--field value ...]` into the three dataclasses.

    Returns them and the recipe as written (before command-line overrides), for the resolved-recipe record. A single
    path (`parse_recipe("recipe.json")`) is one argument, not a sequence of characters.
    """
    if isinstance(argv, (str, os.PathLike)):
        argv = [os.fspath(argv)]
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    recipe_path = _recipe_argument(argv)
    recipe = {}
    if recipe_path is not None:
        recipe = _load_json(Path(recipe_path))
        check_recipe(recipe, source=recipe_path)
        parser.set_defaults(**recipe)
        for action in parser._actions:  # a required field given by the recipe is no longer required on the CLI
            if action.dest in recipe:
                action.required = False

    known = field_types()
    flags = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    for flag in flags:
        name = flag[2:].replace("-", "_")
        base = name[3:] if name.startswith("no_") else name
        if name not in known and base not in known and name != "help":
            raise RecipeError(f"unknown flag '{flag}'.{suggest(name, known)}")
    argv, nulls = _nulls(argv, known)
    parser.set_defaults(**dict.fromkeys(nulls))
    argv = _json_lists(argv, known)

    try:
        *dataclass_values, namespace = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)
    except (ValueError, TypeError, OSError) as err:
        if isinstance(err, RecipeError):
            raise
        raise RecipeError(f"invalid setting: {err}") from None
    del namespace
    model_args, data_args, training_args = dataclass_values
    return model_args, data_args, training_args, recipe


def resolved_recipe(model_args, data_args, training_args) -> dict:
    """Every field's final value, secrets removed, JSON-serialisable."""
    out = {}
    for obj in (model_args, data_args, training_args):
        for f in dataclasses.fields(obj):
            if not f.init or f.name in SECRET_KEYS:
                continue
            value = getattr(obj, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            elif isinstance(value, list):
                value = [v.value if isinstance(v, enum.Enum) else v for v in value]
            try:
                json.dumps(value)
            except TypeError:
                value = str(value)
            out[f.name] = value
    return out
