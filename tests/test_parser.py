"""Strict recipe parsing: every bad input gets a message naming the key, the value and what is expected."""

import json

import pytest

from seqft.errors import RecipeError
from seqft.parser import check_recipe, parse_recipe, resolved_recipe

BASE = {"model_name_or_path": "m", "train_file": "t.txt", "output_dir": "out"}


def write(tmp_path, recipe, name="r.json"):
    path = tmp_path / name
    path.write_text(json.dumps(recipe) if not isinstance(recipe, str) else recipe)
    return str(path)


def test_recipe_values_and_cli_overrides(tmp_path):
    path = write(tmp_path, {**BASE, "learning_rate": 1e-4, "peft_config": {"peft_type": "LORA", "r": 8}})
    model_args, data_args, args, recipe = parse_recipe([path, "--learning_rate", "3e-5", "--num_train_epochs", "2"])
    assert args.learning_rate == 3e-5  # CLI wins
    assert args.num_train_epochs == 2
    assert model_args.peft_config == {"peft_type": "LORA", "r": 8}
    assert data_args.train_file == "t.txt"
    assert recipe["learning_rate"] == 1e-4  # the recipe as written is kept


def test_cli_only_and_negated_bool_flags(tmp_path):
    model_args, _, args, _ = parse_recipe(
        ["--model_name_or_path", "m", "--train_file", "x", "--output_dir", str(tmp_path), "--no_crf_constraints"]
    )
    assert model_args.crf_constraints is False
    assert model_args.model_name_or_path == "m"


BAD_RECIPES = [
    ({**BASE, "lerning_rate": 1e-4}, "unknown key 'lerning_rate'. Did you mean 'learning_rate'?"),
    ({**BASE, "use_crf": "yes"}, "'use_crf' = \"yes\" is not valid: expected true or false"),
    ({**BASE, "num_train_epochs": "3"}, "'num_train_epochs' = \"3\" is not valid: expected a number"),
    ({**BASE, "per_device_train_batch_size": 8.5}, "expected an integer"),
    ({**BASE, "eval_strategy": "epochs"}, "expected one of 'no', 'steps', 'epoch'"),
    ({**BASE, "student_layers": [0, "2"]}, "expected a list of integers"),
    ({**BASE, "peft_config": "lora"}, "expected a JSON object"),
    ({**BASE, "layer_decay": 1.5}, "'layer_decay' = 1.5 is out of range: expected 0 < layer_decay <= 1"),
    ({**BASE, "distill_alpha": -0.1}, "'distill_alpha' = -0.1 is out of range"),
    ({**BASE, "validation_split_percentage": 10}, "expected a share strictly between 0 and 1"),
    ({**BASE, "label_scheme": "BILOU"}, "'label_scheme' = 'BILOU': expected one of IOB2, IOB1, BIOES, plain, auto"),
    ({**BASE, "max_seq_length": 2}, "'max_seq_length' = 2 is out of range: expected an integer >= 8"),
    ({**BASE, "resume_from_checkpoint": True}, "expected a string or null. For the last checkpoint in output_dir"),
    ({**BASE, "report_to": "tensorbord"}, "'tensorbord' is not an integration. Did you mean 'tensorboard'?"),
    ({**BASE, "report_to": ["none", "wandbb"]}, "'wandbb' is not an integration. Did you mean 'wandb'?"),
]


@pytest.mark.parametrize("recipe,message", BAD_RECIPES)
def test_bad_recipes(tmp_path, recipe, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe([write(tmp_path, recipe)])
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"learning_rate": 1e-4,}', "invalid JSON"),
        ("[1, 2]", "a recipe is a JSON object"),
        ('{"seed": 1, "seed": 2}', "key 'seed' appears twice"),
    ],
)
def test_malformed_json(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe([write(tmp_path, text)])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="Recipe file not found"):
        parse_recipe([str(tmp_path / "nope.json")])


def test_unknown_cli_flag_suggests(tmp_path):
    with pytest.raises(RecipeError, match="unknown flag '--max_seq_len'. Did you mean 'max_seq_length'"):
        parse_recipe([write(tmp_path, BASE), "--max_seq_len", "128"])


def test_a_reader_that_goes_away_stops_the_command_quietly(capsys):
    """`python -m seqft.predict ... | head` ended in a BrokenPipeError traceback (found by an audit)."""
    from seqft.errors import run_cli

    def run(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert run_cli(run) == 141 and "Traceback" not in capsys.readouterr().err


def test_bad_cli_value_is_one_error_line_naming_the_flag(tmp_path, capsys):
    from seqft.errors import run_cli

    for argv, expected in (
        (["--learning_rate", "fast"], "--learning_rate/--learning-rate: invalid float value: 'fast'"),
        (["--peft_config", "{bad"], "--peft_config/--peft-config: not a JSON object"),
        (["--do_train", "maybe"], "--do_train/--do-train: Truthy value expected"),
    ):
        assert run_cli(parse_recipe, [write(tmp_path, BASE), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seqft: error: argument ") and expected in err, err
        assert err.count("\n") == 1 and "usage:" not in err and "lists every flag" in err


def test_help_lists_every_field_with_help(capsys):
    with pytest.raises(SystemExit):
        parse_recipe(["--help"])
    text = capsys.readouterr().out
    for name in ("--model_name_or_path", "--label_all_tokens", "--use_crf", "--layer_decay", "--peft_config"):
        assert name in text
    assert "Layer-wise learning-rate decay" in text


def test_resolved_recipe_has_no_secrets(tmp_path):
    path = write(tmp_path, {**BASE, "hub_token": "hf_SECRET", "token": "hf_SECRET2"})
    resolved = resolved_recipe(*parse_recipe([path])[:3])
    text = json.dumps(resolved)
    assert "hf_SECRET" not in text
    assert resolved["learning_rate"] == 5e-5
    check_recipe({k: v for k, v in resolved.items() if v is not None and k != "output_dir"} | {"output_dir": "o"})


@pytest.mark.parametrize(
    "extra",
    [{}, {"peft_config": {"peft_type": "IA3"}}],
    ids=["no adapter", "ia3"],
)
def test_loraplus_needs_a_lora_adapter(tmp_path, extra):
    from seqft.configs import validate_args

    model_args, data_args, training_args, _ = parse_recipe(
        [write(tmp_path, {**BASE, **extra, "loraplus_lr_ratio": 16})]
    )
    with pytest.raises(RecipeError, match="'loraplus_lr_ratio' applies to LoRA adapters"):
        validate_args(model_args, data_args, training_args)
    lora = {**BASE, "peft_config": {"peft_type": "lora", "r": 4}, "loraplus_lr_ratio": 16}
    validate_args(*parse_recipe([write(tmp_path, lora)])[:3])


def test_list_flags_take_json_as_in_a_recipe_or_spaced_values(tmp_path):
    path = write(tmp_path, BASE)
    for argv in (["--student_layers", "[0, 2, 4]"], ["--student_layers", "0", "2", "4"]):
        _, _, training_args, _ = parse_recipe([path, *argv, "--teacher_model_name_or_path", "t"])
        assert training_args.student_layers == [0, 2, 4]
    _, data_args, _, _ = parse_recipe(
        [path, "--task", "sequence-classification", "--csv_header", "false", "--csv_column_names", '["label", "text"]']
    )
    assert data_args.csv_column_names == ["label", "text"]
    with pytest.raises(RecipeError, match=r"--student_layers: '\[0, 2' is not a JSON list"):
        parse_recipe([path, "--student_layers", "[0, 2"])
    # report_to also takes one name, so argparse passed the JSON text through: it failed in a traceback once the
    # data was read (found by an audit)
    assert parse_recipe([path, "--report_to", '["none"]'])[2].report_to == []
    assert parse_recipe([path, "--report_to", "none"])[2].report_to == []


def test_a_json_value_of_a_flag_is_not_read_as_the_recipe(tmp_path):
    """run_ner-style command lines without a recipe: `--train_file train.json` is that file, not a recipe (it was
    parsed as one: 'train.json:2:1: invalid JSON'); the recipe is the positional .json argument, anywhere."""
    (tmp_path / "train.json").write_text(
        '{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["b"], "ner_tags": ["O"]}\n'
    )
    argv = ["--model_name_or_path", "m", "--train_file", str(tmp_path / "train.json"), "--output_dir", "o"]
    model_args, data_args, _, recipe = parse_recipe(argv)
    assert data_args.train_file == str(tmp_path / "train.json") and recipe == {}
    (tmp_path / "r.json").write_text(json.dumps({"model_name_or_path": "from-recipe", "output_dir": "o"}))
    model_args, _, training_args, _ = parse_recipe(["--learning_rate", "3e-5", str(tmp_path / "r.json")])
    assert model_args.model_name_or_path == "from-recipe" and training_args.learning_rate == 3e-5


def test_null_on_the_command_line_turns_a_recipe_setting_off(tmp_path):
    """`--layer_decay null` was read as a number ("invalid float value: 'null'"), so a recipe's LLRD, adapter or
    class weights could not be turned off from the command line."""
    recipe = {**BASE, "layer_decay": 0.8, "peft_config": {"peft_type": "LORA"}, "class_weights": "balanced"}
    path = write(tmp_path, recipe)
    model_args, _, args, _ = parse_recipe([path, "--layer_decay", "null", "--peft_config=null", "--class_weights",
                                           "null", "--learning_rate", "3e-5"])  # fmt: skip
    assert args.layer_decay is None and model_args.peft_config is None and args.class_weights is None
    assert args.learning_rate == 3e-5
    with pytest.raises(RecipeError, match="--learning_rate/--learning-rate: invalid float value: 'null'"):
        parse_recipe([path, "--learning_rate", "null"])  # not a field that may be null
