"""End to end: recipe -> train -> evaluate -> predict -> save -> reload with the Auto classes and the pipeline."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers import SENTENCES, one_step_args, save_tiny_bert, tiny_tokenizer, write_conll
from transformers import (
    AutoModelForTokenClassification,
    BertForTokenClassification,
    DataCollatorForTokenClassification,
    Trainer,
    pipeline,
)

from seqft import SeqFTConfig, SeqFTTrainer, checkpoints
from seqft import data as seqdata
from seqft.errors import RecipeError
from seqft.train import main
from seqft.train import run as main_run


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    save_tiny_bert(root / "encoder")
    write_conll(root / "train.txt", SENTENCES * 3)
    write_conll(root / "dev.txt", SENTENCES[:3])
    write_conll(root / "test.txt", SENTENCES[3:])
    return root


def recipe(root, out, **overrides):
    r = {
        "model_name_or_path": str(root / "encoder"),
        "train_file": str(root / "train.txt"),
        "validation_file": str(root / "dev.txt"),
        "test_file": str(root / "test.txt"),
        "output_dir": str(out),
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "return_entity_level_metrics": True,
    }
    r.update(overrides)
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(r))
    return str(path)


def test_cli_end_to_end(fixture_dir, tmp_path):
    out = tmp_path / "run"
    assert main([recipe(fixture_dir, out), "--learning_rate", "5e-4"]) == 0

    resolved = json.loads((out / "seqft_recipe.json").read_text())
    assert resolved["recipe"]["learning_rate"] == 5e-4
    assert resolved["data_files"]["train"]["sha256"]
    assert "transformers" in resolved["versions"]
    for name in ("train_results.json", "eval_results.json", "test_results.json", "all_results.json"):
        assert (out / name).is_file(), name
    test = json.loads((out / "test_results.json").read_text())
    for key in ("test_f1", "test_strict_f1", "test_accuracy", "test_PER_f1"):
        assert key in test

    # every test word is written once, in the original order, with gold and predicted tags
    lines = (out / "test_predictions.txt").read_text().split("\n\n")
    sentences = [s.split("\n") for s in lines if s.strip()]
    assert [[row.split()[0] for row in s] for s in sentences] == [w for w, _ in SENTENCES[3:]]
    assert [[row.split()[1] for row in s] for s in sentences] == [t for _, t in SENTENCES[3:]]

    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label[0] == "O" and model.config.label_scheme == "IOB2"
    ner = pipeline("token-classification", model=str(out), aggregation_strategy="first", device=-1)
    assert isinstance(ner("john smith lives in berlin ."), list)


def test_recipe_error_exits_cleanly(fixture_dir, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_name_or_path": "x", "train_file": "t", "output_dir": "o", "lerning_rate": 1}))
    proc = subprocess.run([sys.executable, "-m", "seqft.train", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "seqft: error:" in proc.stderr and "Did you mean 'learning_rate'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_error_exits_cleanly(fixture_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nSmith\n")
    assert main([recipe(fixture_dir, tmp_path / "run", train_file=str(bad))]) == 2


def test_eval_only_uses_the_checkpoint_labels(fixture_dir, tmp_path):
    out = tmp_path / "run"
    assert main([recipe(fixture_dir, out, do_predict=False)]) == 0
    again = tmp_path / "again"
    args = [recipe(fixture_dir, again, model_name_or_path=str(out), do_train=False, do_predict=False)]
    assert main(args) == 0
    assert json.loads((again / "eval_results.json").read_text())["eval_f1"] >= 0.0
    # an evaluation into the trained run's own folder (run_ner style) keeps that run's record and card: it replaced
    # them with its own, a card of "a fine-tuned version of <this folder>" (found by an audit)
    recipe_before, card_before = (out / "seqft_recipe.json").read_text(), (out / "README.md").read_text()
    assert main([recipe(fixture_dir, out, model_name_or_path=str(out), do_train=False, do_predict=False)]) == 0
    assert (out / "seqft_recipe.json").read_text() == recipe_before and (out / "README.md").read_text() == card_before
    evaluated = json.loads((out / "seqft_eval_recipe.json").read_text())["recipe"]
    assert evaluated["do_train"] is False and evaluated["model_name_or_path"] == str(out)
    assert not (again / "README.md").exists() and (again / "seqft_eval_recipe.json").is_file()


def test_an_evaluated_model_is_read_in_the_scheme_it_was_trained_in(fixture_dir, tmp_path, capsys):
    """IOB1 and IOB2 share their label names, so an IOB1 model evaluated on data converted to IOB2 (the default) was
    scored against the other scheme's gold without a word; `auto` followed the data, not the model (found by an
    audit). The model's saved label_scheme now decides: `auto` follows it, another scheme is refused."""
    out = tmp_path / "iob1"
    assert main([recipe(fixture_dir, out, label_scheme="IOB1", do_predict=False)]) == 0
    trained = json.loads((out / "eval_results.json").read_text())
    evaluate = {"model_name_or_path": str(out), "do_train": False, "do_predict": False}
    capsys.readouterr()
    assert main([recipe(fixture_dir, tmp_path / "as-iob2", **evaluate)]) == 2
    err = capsys.readouterr().err
    assert "label_scheme is IOB2, but model_name_or_path" in err
    assert "was trained in IOB1 (its config's label_scheme): set label_scheme to IOB1 (or auto)" in err
    assert main([recipe(fixture_dir, tmp_path / "crf", use_crf=True, label_scheme="auto", **evaluate)]) == 2
    assert "'use_crf' is set and 'do_train' is false, but" in capsys.readouterr().err  # it scored a random CRF
    assert main([recipe(fixture_dir, tmp_path / "auto", label_scheme="auto", **evaluate)]) == 0
    again = json.loads((tmp_path / "auto" / "eval_results.json").read_text())
    assert again["eval_f1"] == trained["eval_f1"] and again["eval_accuracy"] == trained["eval_accuracy"]


def test_dataloader_drop_last_drops_no_evaluated_or_predicted_sentence(fixture_dir, tmp_path):
    """The stock evaluation and test loaders dropped their last batch too: a traceback over missing windows, or
    (classification) a wrong accuracy. It now applies to training batches only (found by an audit)."""
    out = tmp_path / "run"
    assert main([recipe(fixture_dir, out, do_predict=False)]) == 0
    scored = {}
    for drop in (False, True):
        again = tmp_path / f"drop-{drop}"
        evaluate = {"model_name_or_path": str(out), "do_train": False, "per_device_eval_batch_size": 2}
        assert main([recipe(fixture_dir, again, dataloader_drop_last=drop, **evaluate)]) == 0
        results = json.loads((again / "all_results.json").read_text())
        scored[drop] = ({k: v for k, v in results.items() if "time" not in k and "per_second" not in k},
                        (again / "test_predictions.txt").read_text())  # fmt: skip
    assert scored[True] == scored[False]


def test_an_earlier_run_in_output_dir_is_refused_or_replaced(fixture_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([recipe(fixture_dir, out, save_strategy="steps", save_steps=2)]) == 0
    (out / "notes.txt").write_text("mine")  # not seqft's: never touched
    assert (out / "checkpoint-2").is_dir() and (out / "test_results.json").is_file()

    capsys.readouterr()
    # a replacing run that fails on its inputs (here a mistyped file) deletes nothing: it stops before clearing
    assert (
        main([recipe(fixture_dir, out, overwrite_output_dir=True, validation_file=str(fixture_dir / "dve.txt"))]) == 2
    )
    assert "Data file not found" in capsys.readouterr().err
    assert (out / "checkpoint-2").is_dir() and (out / "test_results.json").is_file()
    # nor one that the trainer refuses as it is built (it cleared first: found by an audit)
    bad_adapter = {"peft_type": "LORA", "r": 4, "target_modules": ["qkv"]}
    assert main([recipe(fixture_dir, out, overwrite_output_dir=True, peft_config=bad_adapter)]) == 2
    assert "'qkv' matches no module" in capsys.readouterr().err
    assert (out / "checkpoint-2").is_dir() and (out / "test_results.json").is_file()
    assert main([recipe(fixture_dir, out, do_predict=False)]) == 2  # as run_ner.py refused it
    err = capsys.readouterr().err
    assert "holds an earlier run (checkpoint-2, checkpoint-4, all_results.json" in err
    assert "'resume_from_checkpoint': 'last'" in err and "'overwrite_output_dir': true" in err
    assert (out / "checkpoint-2").is_dir()

    # replaced: no checkpoint, score or prediction of the first run survives into the second's results or card
    assert main([recipe(fixture_dir, out, do_predict=False, overwrite_output_dir=True)]) == 0
    assert not list(out.glob("checkpoint-*"))
    assert not (out / "test_results.json").exists() and not (out / "test_predictions.txt").exists()
    assert not any(k.startswith("test_") for k in json.loads((out / "all_results.json").read_text()))
    assert "test_f1" not in (out / "README.md").read_text().replace("eval_f1", "")
    assert (out / "notes.txt").read_text() == "mine"

    # 'last' with no checkpoint starts afresh, so the finished run's results are refused as before
    capsys.readouterr()
    assert main([recipe(fixture_dir, out, resume_from_checkpoint="last")]) == 2
    assert "It has no checkpoint to resume: set 'overwrite_output_dir': true" in capsys.readouterr().err


def test_a_full_run_written_over_an_adapter_run_loads_as_itself(fixture_dir, tmp_path):
    """overwrite_output_dir deleted the earlier run's checkpoints and results but not its model: a full model
    written over a LoRA run kept adapter_config.json beside it, and the Auto classes and seqft.predict loaded the
    stale adapter (found by an audit)."""
    from seqft.predict import Predictor, read_input

    out = tmp_path / "run"
    lora = {"peft_type": "LORA", "r": 2, "target_modules": ["query"]}
    assert main([recipe(fixture_dir, out, peft_config=lora, do_eval=False)]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "base_config").is_dir()
    assert main([recipe(fixture_dir, out, overwrite_output_dir=True, learning_rate=5e-3, do_eval=False)]) == 0
    assert not (out / "adapter_config.json").exists() and not (out / "base_config").exists()
    assert not hasattr(AutoModelForTokenClassification.from_pretrained(out), "peft_config")
    documents = read_input(str(fixture_dir / "test.txt"), "conll")
    predicted = "".join(p.to_conll() + "\n" for p in Predictor(out).predict_documents(documents))
    written = [line.split()[-1] for line in (out / "test_predictions.txt").read_text().splitlines() if line.strip()]
    assert [line.split()[-1] for line in predicted.splitlines() if line.strip() and "DOCSTART" not in line] == written

    # training on from the folder itself keeps the model it loads from (an adapter's base)
    assert main([recipe(fixture_dir, out, model_name_or_path=str(out), overwrite_output_dir=True, max_steps=1)]) == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_resume_refuses_other_settings_and_allows_a_longer_run(fixture_dir, tmp_path, capsys):
    out = tmp_path / "run"
    first = dict(max_steps=2, save_strategy="steps", save_steps=2, do_eval=False, do_predict=False)
    assert main([recipe(fixture_dir, out, **first)]) == 0
    saved = json.loads((out / "checkpoint-2" / "seqft_recipe.json").read_text())
    assert saved["world_size"] == 1 and saved["recipe"]["learning_rate"] == 1e-3
    resume = dict(first, resume_from_checkpoint="last", max_steps=4)
    capsys.readouterr()
    for overrides, message in (
        ({"learning_rate": 0.5}, "learning_rate: 0.001 there, 0.5 here"),
        ({"use_crf": True, "layer_decay": 0.9}, "layer_decay: null there, 0.9 here; use_crf: false there, true here"),
        ({"gradient_accumulation_steps": 2}, "the global batch (per device x accumulation x processes): 4 x 1 x 1"),
        ({"train_file": str(fixture_dir / "dev.txt")}, "the training file's contents (sha256)"),
    ):
        assert main([recipe(fixture_dir, out, **{**resume, **overrides})]) == 2
        err = capsys.readouterr().err
        assert f"'resume_from_checkpoint': {out / 'checkpoint-2'} was trained with other settings" in err, err
        assert message in err, err
    # the same global batch split otherwise, a longer run, other logging and outputs: resumed
    again = dict(resume, per_device_train_batch_size=2, gradient_accumulation_steps=2, logging_steps=1, do_eval=True)
    assert main([recipe(fixture_dir, out, **again)]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    # the same command once more, as a requeued job runs it: finished, nothing trained or overwritten
    results = (out / "train_results.json").read_text()
    capsys.readouterr()
    assert main([recipe(fixture_dir, out, **again)]) == 0
    assert (out / "train_results.json").read_text() == results and not (out / "checkpoint-5").exists()


def test_a_requeued_job_finds_its_run_finished_or_its_cut_short_saves(fixture_dir, tmp_path, capsys):
    """With load_best_model_at_end and save_total_limit 1 the Trainer deletes the final checkpoint when an earlier
    one is best: the requeued job resumed from that one and trained the last steps again. A job killed during its
    first save was refused: its staging directory counted as an earlier run."""
    out = tmp_path / "run"
    args = dict(max_steps=4, save_strategy="steps", save_steps=2, do_predict=False, resume_from_checkpoint="last")
    assert main([recipe(fixture_dir, out, **args)]) == 0
    results = (out / "train_results.json").read_text()
    shutil.rmtree(out / "checkpoint-4")  # what the Trainer does when checkpoint-2 is the best and the limit is 1
    assert main([recipe(fixture_dir, out, **args)]) == 0
    assert (out / "train_results.json").read_text() == results and not (out / "checkpoint-4").exists()
    # a longer schedule does train on, from checkpoint-2
    assert main([recipe(fixture_dir, out, **{**args, "max_steps": 6})]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    # killed between its last save and its outputs: said, not "finished" with no model written
    (out / "train_results.json").unlink()
    capsys.readouterr()
    assert main([recipe(fixture_dir, out, **{**args, "max_steps": 6})]) == 2
    assert "is the last step (6) of its run, but the run's final model and results" in capsys.readouterr().err

    cut = tmp_path / "cut"  # killed in its first save: a staging directory, and an old JIT save's marker
    (cut / "tmp-checkpoint-2" / "checkpoint-2").mkdir(parents=True)
    (cut / "checkpoint-4").mkdir()
    (cut / "checkpoint-4" / "checkpoint-is-incomplete.txt").write_text("...")
    assert main([recipe(fixture_dir, cut, **args)]) == 0
    assert not (cut / "tmp-checkpoint-2").exists() and not checkpoints.checkpoint_problems(cut / "checkpoint-4")
    # without 'last' they are an earlier run, as before
    (cut / "tmp-checkpoint-9").mkdir()
    capsys.readouterr()
    assert main([recipe(fixture_dir, tmp_path / "cut", max_steps=4, overwrite_output_dir=False)]) == 2
    assert "holds an earlier run" in capsys.readouterr().err


def test_resume_on_another_number_of_processes_is_refused(tmp_path):
    record = {"recipe": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "seed": 1}}
    (tmp_path / "seqft_recipe.json").write_text(json.dumps({**record, "world_size": 2}))
    checkpoints.check_resume(str(tmp_path), record, world_size=2)
    with pytest.raises(RecipeError, match=r"8 x 1 x 2 there, 8 x 1 x 1 here"):
        checkpoints.check_resume(str(tmp_path), record, world_size=1)
    record_16 = {"recipe": {**record["recipe"], "per_device_train_batch_size": 16}}
    checkpoints.check_resume(str(tmp_path), record_16, world_size=1)  # the same 16 sentences a step
    # the teacher-tagged sentences of distill_unlabelled_file join the training set: their file may not change
    files = {"distill_unlabelled": {"sha256": "a"}, "label_names": {"sha256": "b"}}
    (tmp_path / "seqft_recipe.json").write_text(json.dumps({**record, "world_size": 2, "data_files": files}))
    checkpoints.check_resume(str(tmp_path), {**record, "data_files": files}, world_size=2)
    with pytest.raises(RecipeError, match=r"distill_unlabelled_file's contents \(sha256\); the label names file's"):
        changed = {"distill_unlabelled": {"sha256": "c"}, "label_names": {"sha256": "d"}}
        checkpoints.check_resume(str(tmp_path), {**record, "data_files": changed}, world_size=2)
    # a teacher retrained in place keeps its path: its weights are fingerprinted
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"first")
    files = {"teacher_weights": seqdata.fingerprint_weights(str(teacher))}
    (tmp_path / "seqft_recipe.json").write_text(json.dumps({**record, "world_size": 2, "data_files": files}))
    (teacher / "model.safetensors").write_bytes(b"retrained")
    now = {"teacher_weights": seqdata.fingerprint_weights(str(teacher))}
    with pytest.raises(RecipeError, match=r"the teacher's weights \(sha256\)"):
        checkpoints.check_resume(str(tmp_path), {**record, "data_files": now}, world_size=2)
    assert seqdata.fingerprint_weights(str(tmp_path / "nowhere")) is None


def test_metric_for_best_model_is_checked_before_training(fixture_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = dict(eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2, load_best_model_at_end=True)
    assert main([recipe(fixture_dir, out, metric_for_best_model="strict_f1s", **args)]) == 2
    err = capsys.readouterr().err
    assert (
        "'metric_for_best_model' = 'strict_f1s' is not a metric of this evaluation. Did you mean 'strict_f1'?" in err
    )
    assert "PER_f1" in err  # entity-level keys, as return_entity_level_metrics gives them
    assert not out.exists() or not list(out.glob("checkpoint-*"))  # no step was trained
    assert main([recipe(fixture_dir, out, metric_for_best_model="eval_PER_f1", **args)]) == 0

    # a type the validation set lacks (and the model does not predict) is still reported, as 0 with number 0: it
    # passed the check above, then stopped the run at its first evaluation with a KeyError (found by an audit)
    write_conll(tmp_path / "per.txt", [s for s in SENTENCES if not any("ORG" in t for t in s[1])])
    only_per = dict(args, validation_file=str(tmp_path / "per.txt"), overwrite_output_dir=True)
    assert main([recipe(fixture_dir, out, metric_for_best_model="ORG_number", **only_per)]) == 0
    logged = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "eval_f1" in log]
    assert logged and all(log["eval_ORG_number"] == 0 and log["eval_ORG_f1"] == 0.0 for log in logged)
    assert len({frozenset(log) for log in logged}) == 1  # every evaluation logs the same keys


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model_name_or_path": "/no/such/encoder"}, "'model_name_or_path' = '/no/such/encoder' is not a directory"),
        # shaped like a Hub id (a recipe's output_dir not written yet): a traceback before (an audit)
        ({"model_name_or_path": "outputs/never-written"}, "/never-written' could not be loaded: it is neither a"),
        ({"tokenizer_name": "./no-such-tokenizer"}, "'tokenizer_name' = './no-such-tokenizer' is not a directory"),
        ({"output_dir": "FILE"}, "is a file: give a directory"),
        ({"validation_file": None, "eval_strategy": "steps", "eval_steps": 1}, "there is no validation data"),
        ({"do_train": False}, "it is a base encoder, whose new head would score at random"),
    ],
)
def test_run_level_mistakes_are_one_clean_error(fixture_dir, tmp_path, capsys, overrides, message):
    if overrides.get("output_dir") == "FILE":
        (tmp_path / "a-file").write_text("")
        overrides = {"output_dir": str(tmp_path / "a-file")}
    path = recipe(fixture_dir, tmp_path / "run")
    r = {**json.loads(Path(path).read_text()), **overrides}
    Path(path).write_text(json.dumps({k: v for k, v in r.items() if v is not None}))
    assert main([path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqft: error:") and message in err, err


def test_evaluation_without_its_split_is_reported(fixture_dir, tmp_path, caplog):
    path = recipe(fixture_dir, tmp_path / "run", max_steps=1)
    r = json.loads(Path(path).read_text())
    del r["validation_file"], r["test_file"]
    Path(path).write_text(json.dumps(r))
    with caplog.at_level("WARNING", logger="seqft"):
        assert main([path]) == 0
    assert "'do_eval' is set but there is no validation data, so it is skipped" in caplog.text
    assert "'do_predict' is set but there is no test data, so it is skipped" in caplog.text


# --- the loss does not depend on how a batch is split ----------------------------------------------------------


def _one_step(tmp_path, trainer_cls, batch, accumulation):
    tok = tiny_tokenizer()
    label2id = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4, "B-ORG": 5, "I-ORG": 6}
    raw = Dataset.from_dict(
        {
            "tokens": [w for w, _ in SENTENCES] + [SENTENCES[0][0][:2]] * 2,
            "tags": [t for _, t in SENTENCES] + [SENTENCES[0][1][:2]] * 2,
        }
    )
    ds = seqdata.tokenize_split(raw, tok, label2id, 32, False).remove_columns(
        ["tokens", "tags", "length", "num_words_kept"]
    )
    torch.manual_seed(0)
    from helpers import tiny_bert_config

    model = BertForTokenClassification(
        tiny_bert_config(num_labels=7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    args = one_step_args(tmp_path / trainer_cls.__name__ / str(accumulation), batch, accumulation)
    kwargs = dict(model=model, args=args, train_dataset=ds, data_collator=DataCollatorForTokenClassification(tok))
    trainer = trainer_cls(**kwargs)
    result = trainer.train()
    return result.training_loss, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_gradient_accumulation_invariance(tmp_path):
    loss_full, weights_full = _one_step(tmp_path, SeqFTTrainer, batch=8, accumulation=1)
    loss_split, weights_split = _one_step(tmp_path, SeqFTTrainer, batch=4, accumulation=2)
    assert loss_split == pytest.approx(loss_full, rel=1e-5)
    for name, value in weights_full.items():
        torch.testing.assert_close(weights_split[name], value, rtol=1e-4, atol=1e-6, msg=name)

    # The stock Trainer on the same model trains with a different loss (transformers #47688), which is why
    # SeqFTTrainer computes the loss itself; this shows the test above is able to fail.
    stock_full, _ = _one_step(tmp_path, Trainer, batch=8, accumulation=1)
    stock_split, _ = _one_step(tmp_path, Trainer, batch=4, accumulation=2)
    if stock_split == pytest.approx(stock_full, rel=1e-5):
        pytest.skip("upstream fixed the loss scaling of stock token-classification heads")
    assert stock_split != pytest.approx(stock_full, rel=1e-3)


def test_offline_env():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_cli_crf_end_to_end(fixture_dir, tmp_path):
    """use_crf: trains with the CRF loss, evaluates Viterbi paths, reloads through the Auto classes."""
    from seqft import SeqFTCRFForTokenClassification
    from seqft.labels import validate_sequence
    from seqft.modeling.crf import allowed_transitions

    out = tmp_path / "crf"
    assert main([recipe(fixture_dir, out, use_crf=True, max_steps=6)]) == 0
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert isinstance(model, SeqFTCRFForTokenClassification)
    assert model.config.label_scheme == "IOB2"

    # predictions are constrained Viterbi paths: every predicted sentence is valid IOB2
    sentences = [s.split("\n") for s in (out / "test_predictions.txt").read_text().split("\n\n") if s.strip()]
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    allowed, start, _ = allowed_transitions(labels, "IOB2")
    for sentence in sentences:
        predicted = [row.split()[2] for row in sentence]
        assert validate_sequence(predicted, "IOB2") is None
        ids = [model.config.label2id[t] for t in predicted]
        assert bool(start[ids[0]]) and all(bool(allowed[a, b]) for a, b in zip(ids, ids[1:]))


def test_training_on_from_a_crf_model_needs_use_crf(fixture_dir, tmp_path, capsys):
    """A CRF model trained on without use_crf loaded as it was and trained its CRF, while the recipe, its checks
    (class_weights, label smoothing) and the card said softmax (found by an audit)."""
    out = tmp_path / "crf"
    assert main([recipe(fixture_dir, out, use_crf=True, max_steps=2, do_predict=False)]) == 0
    capsys.readouterr()
    assert main([recipe(fixture_dir, tmp_path / "on", model_name_or_path=str(out), max_steps=1)]) == 2
    err = capsys.readouterr().err
    assert "has a CRF head, but 'use_crf' is false: set 'use_crf': true to train on with it" in err
    assert not (tmp_path / "on").exists()
    on = tmp_path / "on-crf"
    assert main([recipe(fixture_dir, on, model_name_or_path=str(out), use_crf=True, max_steps=1)]) == 0
    assert json.loads((on / "config.json").read_text())["model_type"] == "seqft_crf"


def test_group_by_length_serves_shuffled_length_groups(tmp_path):
    from seqft.data import ShuffledLengthGroupedSampler

    tok = tiny_tokenizer()
    raw = Dataset.from_dict({"tokens": [w for w, _ in SENTENCES], "tags": [["O"] * len(w) for w, _ in SENTENCES]})
    ds = seqdata.tokenize_split(raw, tok, {"O": 0}, 32, False)
    from helpers import tiny_bert_config

    args = SeqFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, train_sampling_strategy="group_by_length",
        use_cpu=True, report_to="none",
    )  # fmt: skip
    trainer = SeqFTTrainer(
        model=BertForTokenClassification(tiny_bert_config(num_labels=1)),
        args=args,
        train_dataset=ds,
        data_collator=DataCollatorForTokenClassification(tok),
    )
    # what the Trainer's dataloader asks for: the sampler of the column-stripped copy of the dataset
    sampler = trainer._get_train_sampler(trainer._remove_unused_columns(ds))
    assert isinstance(sampler, ShuffledLengthGroupedSampler)
    assert sampler.lengths == ds["length"]


def test_distill_unlabelled_file_adds_teacher_tagged_sentences(fixture_dir, tmp_path):
    from seqft import DataError, RecipeError, distill
    from seqft import labels as schemes
    from seqft.predict import Document, Predictor
    from seqft.train import run

    teacher_dir = tmp_path / "teacher"
    assert main([recipe(fixture_dir, teacher_dir, max_steps=6, do_eval=False, do_predict=False)]) == 0
    unlabelled = tmp_path / "more.txt"
    unlabelled.write_text("mary lives in new york .\n\njohn smith works for acme corp in paris .\nberlin\n")

    # the teacher's tags are seqft.predict's tags for the same words, converted into the student's scheme
    teacher = distill.load_teacher(str(teacher_dir))
    labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    rows = distill.teacher_tagged_sentences(teacher, str(unlabelled), labels, "IOB2", first_doc_id=7)
    words = [s.split() for s in ("mary lives in new york .", "john smith works for acme corp in paris .", "berlin")]
    assert rows["tokens"] == words  # the blank line is skipped
    tagged = Predictor(str(teacher_dir)).predict_documents([Document.from_words(w) for w in words])
    assert rows["tags"] == [p.tags for p in tagged]
    assert any(t != "O" for s in rows["tags"] for t in s)  # the teacher learnt something to pass on
    assert rows["doc_id"] == [7, 8, 9] and rows["source"] == [f"{unlabelled}:{n}" for n in (1, 3, 4)]
    iob1 = distill.teacher_tagged_sentences(teacher, str(unlabelled), labels, "IOB1")["tags"]
    assert iob1 == [schemes.convert(s, "IOB2", "IOB1") for s in rows["tags"]]

    # from a recipe: the three sentences join the 18 labelled ones; the recipe records the file's fingerprint
    out = tmp_path / "student"
    student = recipe(
        fixture_dir,
        out,
        teacher_model_name_or_path=str(teacher_dir),
        distill_unlabelled_file=str(unlabelled),
        max_steps=2,
        do_eval=False,
        do_predict=False,
    )
    assert main([student]) == 0
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == 18 + 3
    assert json.loads((out / "seqft_recipe.json").read_text())["data_files"]["distill_unlabelled"]["sha256"]

    with pytest.raises(RecipeError, match="'distill_unlabelled_file' is tagged by the teacher"):
        run([recipe(fixture_dir, tmp_path / "x", distill_unlabelled_file=str(unlabelled))])
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="nope.txt: no such file"):
        run(
            [
                recipe(
                    fixture_dir,
                    tmp_path / "y",
                    teacher_model_name_or_path=str(teacher_dir),
                    distill_unlabelled_file=missing,
                )
            ]
        )


def test_training_on_from_a_fine_tuned_model_keeps_its_label_order(fixture_dir, tmp_path):
    """A checkpoint whose labels are the data's in another order (a Hub NER model's own order): the run keeps that
    order, so each classifier row keeps its label. It used to re-sort them, relabelling the rows silently."""
    from helpers import tiny_bert_config

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"][::-1]
    torch.manual_seed(0)
    config = tiny_bert_config(
        num_labels=7, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    BertForTokenClassification(config).save_pretrained(tmp_path / "tuned")
    tiny_tokenizer().save_pretrained(tmp_path / "tuned")
    out = tmp_path / "out"
    assert main([recipe(fixture_dir, out, model_name_or_path=str(tmp_path / "tuned"), learning_rate=1e-12)]) == 0
    saved = json.loads((out / "config.json").read_text())["id2label"]
    assert [saved[str(i)] for i in range(7)] == labels
    from safetensors.torch import load_file

    before, after = (load_file(d / "model.safetensors")["classifier.weight"] for d in (tmp_path / "tuned", out))
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    # an adapter folder is not a model to evaluate: one clean error
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(
        RecipeError, match=r"holds a PEFT adapter without its base model: point it at the run's merged"
    ):
        main_run(recipe(fixture_dir, tmp_path / "eval", model_name_or_path=str(tmp_path / "adapter"), do_train=False))


def test_train_samples_counts_sentences_and_train_windows_the_windows(fixture_dir, tmp_path):
    out = tmp_path / "win"
    assert main([recipe(fixture_dir, out, max_seq_length=8, do_eval=False, do_predict=False, max_steps=1)]) == 0
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_samples"] == len(SENTENCES) * 3  # as run_ner.py counts: sentences (it counted windows)
    assert results["train_windows"] > results["train_samples"]


def test_config_name_reaches_the_crf_encoder_and_settings_that_break_seqft_are_refused(fixture_dir, tmp_path, capsys):
    from helpers import tiny_bert_config

    tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).save_pretrained(tmp_path / "cfg")
    out = tmp_path / "crf"
    args = recipe(fixture_dir, out, use_crf=True, config_name=str(tmp_path / "cfg"), max_steps=1, do_predict=False)
    assert main([args]) == 0
    encoder = json.loads((out / "config.json").read_text())["encoder_config"]
    assert encoder["hidden_dropout_prob"] == 0.0  # it kept the encoder's own 0.1, silently
    three = ["O", "B-X", "I-X"]
    config = tiny_bert_config(
        num_labels=3, id2label=dict(enumerate(three)), label2id={n: i for i, n in enumerate(three)}
    )
    BertForTokenClassification(config).save_pretrained(tmp_path / "three")
    tiny_tokenizer().save_pretrained(tmp_path / "three")
    for overrides, message in [
        ({"model_name_or_path": str(tmp_path / "three")}, "set 'ignore_mismatched_sizes': true to train a new one"),
        ({"config_name": str(tmp_path / "nope")}, "'config_name' = "),
        ({"remove_unused_columns": False}, "'remove_unused_columns' must stay true"),
        ({"prediction_loss_only": True}, "'prediction_loss_only' drops the predictions"),
        ({"batch_eval_metrics": True}, "'batch_eval_metrics' scores each evaluation batch on its own"),
        ({"push_to_hub": True}, "'push_to_hub' uploads to the Hugging Face Hub, but HF_HUB_OFFLINE is set"),
    ]:
        assert main([recipe(fixture_dir, tmp_path / "bad", **overrides)]) == 2
        assert message in capsys.readouterr().err, overrides


def test_max_train_samples_keeps_the_label_list_of_the_whole_training_file(fixture_dir, tmp_path):
    """As run_ner.py: the labels come from all of train, then the limit applies. With the labels of the first
    sentences only, a debugging run failed on a validation tag 'not among the model's labels' (and its head shrank)."""
    out = tmp_path / "one"
    assert main([recipe(fixture_dir, out, max_train_samples=1, max_steps=1, per_device_train_batch_size=1)]) == 0
    labels = set(json.loads((out / "config.json").read_text())["id2label"].values())
    assert labels == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == 1


def test_a_special_token_written_in_the_data_is_text(fixture_dir, tmp_path):
    """A word "[SEP]" in a sentence became the separator token, in training and prediction alike; the saved
    tokenizer now splits it into text pieces, so the pipeline and seqft.predict read it as a word too."""
    from transformers import AutoTokenizer

    from seqft.predict import Document, Predictor

    write_conll(tmp_path / "train.txt", [(["John", "[SEP]", "Berlin"], ["B-PER", "O", "B-LOC"])] + SENTENCES)
    out = tmp_path / "run"
    assert main([recipe(fixture_dir, out, train_file=str(tmp_path / "train.txt"), do_eval=False, max_steps=1)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(["john", "[SEP]", "berlin"], is_split_into_words=True)["input_ids"]
    assert ids.count(tokenizer.sep_token_id) == 1 and ids[-1] == tokenizer.sep_token_id
    (prediction,) = Predictor(out).predict_documents([Document.from_words(["John", "[SEP]", "[MASK]", "Berlin"])])
    assert len(prediction.tags) == 4


def test_a_word_holding_whitespace_stays_one_line_of_test_predictions(fixture_dir, tmp_path, caplog):
    """JSON (or Hub) data may hold "New York" as one word; test_predictions.txt wrote it as two fields (four on
    the line), which the model card's plots and any CoNLL reader then misread."""
    rows = [{"tokens": ["John", "New York", "visited"], "ner_tags": ["B-PER", "B-LOC", "O"]}] * 4
    (tmp_path / "data.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    data = str(tmp_path / "data.json")
    overrides = dict(train_file=data, validation_file=data, test_file=data, max_steps=1, do_eval=False)
    assert main([recipe(fixture_dir, out, **overrides)]) == 0
    lines = [line.split() for line in (out / "test_predictions.txt").read_text().splitlines() if line]
    assert len(lines) == 12 and all(len(fields) == 3 for fields in lines)
    assert [fields[0] for fields in lines[:3]] == ["John", "New_York", "visited"]
    assert "4 word(s) held whitespace" in caplog.text


def test_a_saved_recipe_reruns_from_another_directory_and_names_changed_files(fixture_dir, tmp_path, monkeypatch):
    """seqft_recipe.json kept relative data paths, so it did not re-run from another working directory, and a data
    file changed since the run went unnoticed although its SHA-256 was recorded."""
    import logging

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(fixture_dir / "train.txt", work / "train.txt")
    monkeypatch.chdir(work)
    out = work / "run"
    overrides = dict(train_file="train.txt", validation_file=None, test_file=None, do_eval=False, do_predict=False)
    assert main([recipe(fixture_dir, out, max_steps=1, **overrides)]) == 0
    saved = str(out / "seqft_recipe.json")
    monkeypatch.chdir(tmp_path)
    assert main([saved, "--output_dir", str(tmp_path / "again")]) == 0  # was: Data file not found: train.txt
    first, again = (json.loads((d / "train_results.json").read_text()) for d in (out, tmp_path / "again"))
    assert again["train_loss"] == first["train_loss"]

    write_conll(work / "train.txt", SENTENCES[:2])
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("seqft").addHandler(handler)
    try:
        assert main([saved, "--output_dir", str(tmp_path / "changed")]) == 0
    finally:
        logging.getLogger("seqft").removeHandler(handler)
    assert any("'train_file' (train.txt) changed since the run that wrote this recipe" in m for m in messages)


def test_a_classifier_trained_on_with_another_label_set_keeps_the_rows_of_shared_labels():
    """Same number of labels, another set (MISC renamed NUM): the rows loaded in the checkpoint's order, so old
    B-LOC served as new O, under a warning that said the classifier did not carry over (found by an audit)."""
    import torch
    from helpers import tiny_bert_config

    from seqft.train import carry_over_rows

    old = ["B-LOC", "B-MISC", "O"]
    model = BertForTokenClassification(tiny_bert_config(num_labels=3))
    before = model.classifier.weight.detach().clone()
    new = ["O", "B-LOC", "B-NUM"]
    assert carry_over_rows(model, old, new) == 2
    torch.testing.assert_close(model.classifier.weight[0], before[2])  # O's own row, not B-LOC's
    torch.testing.assert_close(model.classifier.weight[1], before[0])
    assert not torch.equal(model.classifier.weight[2], before[1]) and float(model.classifier.bias[2].detach()) == 0.0


def test_training_on_from_a_model_of_another_scheme_names_its_scheme(fixture_dir, tmp_path, capsys, caplog):
    """A BIOES model trained on with IOB2 data (the default scheme) was told to drop its classifier
    (ignore_mismatched_sizes); its own scheme keeps it."""
    bioes = tmp_path / "bioes"
    assert main([recipe(fixture_dir, bioes, label_scheme="BIOES", max_steps=1, do_eval=False, do_predict=False)]) == 0
    capsys.readouterr()
    on = {"model_name_or_path": str(bioes), "max_steps": 1, "do_eval": False, "do_predict": False}
    with caplog.at_level("WARNING"):
        assert main([recipe(fixture_dir, tmp_path / "iob2", **on)]) == 2
    advice = "It was trained in BIOES for the data's entity types: set 'label_scheme': 'BIOES' to keep its classifier"
    err = capsys.readouterr().err
    assert "'ignore_mismatched_sizes': true to train a new one. " + advice in err and advice in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a CRF run keeps only the encoder then, and says so
        assert main([recipe(fixture_dir, tmp_path / "crf", use_crf=True, **on)]) == 0
    assert "its encoder carries on under a new classifier and CRF. " + advice in caplog.text
    assert main([recipe(fixture_dir, tmp_path / "kept", label_scheme="BIOES", **on)]) == 0
    kept = json.loads((tmp_path / "kept" / "config.json").read_text())
    assert kept["label_scheme"] == "BIOES" and len(kept["id2label"]) == 13
