"""Every shipped recipe parses strictly and dry-runs: its own settings, with a tiny encoder and fixture data."""

import json
from pathlib import Path

import pytest
import torch
from helpers import SENTENCES, save_tiny_bert, write_conll

from seqft.errors import RecipeError
from seqft.parser import check_recipe, parse_recipe
from seqft.train import main

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.json"))
DATA_KEYS = ("dataset_name", "dataset_config_name", "train_file", "validation_file", "test_file")
# Sequence-classification recipes get an AG News-style fixture: headerless CSV with 1-based ids and a names file.
SEQCLS_KEYS = {
    "csv_header": False,
    "csv_column_names": ["label", "title", "description"],
    "text_column_names": ["title", "description"],
    "text_column_name": None,
    "label_column_name": "label",
}


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"quickstart.json", "conll.json"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_strictly(path):
    recipe = json.loads(path.read_text())
    check_recipe(recipe, source=path.name)
    parse_recipe([str(path)])


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    save_tiny_bert(root / "encoder")
    write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "test.txt", SENTENCES[:2])
    rows = [f'"{k % 4 + 1}","{" ".join(w)}","{" ".join(w[:2])}"' for k, (w, _) in enumerate(SENTENCES * 2)]
    (root / "texts.csv").write_text("\n".join(rows) + "\n")
    (root / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    teacher = root / "teacher"
    args = {
        "model_name_or_path": str(root / "encoder"),
        "train_file": str(root / "train.txt"),
        "output_dir": str(teacher),
        "do_train": True,
        "max_steps": 2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    (root / "teacher.json").write_text(json.dumps(args))
    assert main([str(root / "teacher.json")]) == 0
    # a CRF teacher too: a student built from the teacher's layers keeps the teacher's head
    crf_args = dict(args, output_dir=str(root / "teacher_crf"), use_crf=True)
    (root / "teacher_crf.json").write_text(json.dumps(crf_args))
    assert main([str(root / "teacher_crf.json")]) == 0
    return root


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_dry_runs(path, fixtures, tmp_path):
    recipe = {k: v for k, v in json.loads(path.read_text()).items() if k not in DATA_KEYS}
    recipe.update(
        model_name_or_path=str(fixtures / "encoder"),
        train_file=str(fixtures / "train.txt"),
        validation_file=str(fixtures / "test.txt"),
        test_file=str(fixtures / "test.txt"),
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        disable_tqdm=True,
        use_cpu=True,
        push_to_hub=False,
    )
    if recipe.get("max_seq_length"):
        recipe["max_seq_length"] = 32  # the tiny stand-in encoder has 64 positions
    recipe.pop("validation_split_percentage", None)
    recipe.pop("test_split_percentage", None)
    if "teacher_model_name_or_path" in recipe:
        recipe["teacher_model_name_or_path"] = str(fixtures / ("teacher_crf" if recipe.get("use_crf") else "teacher"))
    if recipe.get("student_layers"):
        recipe["student_layers"] = [0]
    if recipe.get("task") == "sequence-classification":
        csv_file = str(fixtures / "texts.csv")
        recipe.update(SEQCLS_KEYS, train_file=csv_file, validation_file=csv_file, test_file=csv_file)
        recipe["label_names_file"] = str(fixtures / "classes.txt")
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "out" / "seqft_recipe.json").is_file()


@pytest.mark.parametrize("student_init", ["teacher", "model"])
def test_student_init_chooses_where_the_student_blocks_come_from(fixtures, tmp_path, student_init):
    from safetensors.torch import load_file

    recipe = {
        "model_name_or_path": str(fixtures / "encoder"),
        "teacher_model_name_or_path": str(fixtures / "teacher"),
        "student_layers": [1],
        "student_init": student_init,
        "train_file": str(fixtures / "train.txt"),
        "output_dir": str(tmp_path / "out"),
        "do_train": True,
        "max_steps": 1,
        "learning_rate": 1e-12,  # the student leaves training as it was built
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 0
    student = load_file(tmp_path / "out" / "model.safetensors")
    encoder = load_file(next((fixtures / "encoder").glob("*.safetensors")))
    teacher = load_file(fixtures / "teacher" / "model.safetensors")
    name = "attention.self.query.weight"
    block = student[f"bert.encoder.layer.0.{name}"]
    in_teacher, in_encoder = (
        teacher[f"bert.encoder.layer.1.{name}"],
        encoder[f"encoder.layer.1.{name}"],
    )  # a bare BertModel
    source, other = (in_teacher, in_encoder) if student_init == "teacher" else (in_encoder, in_teacher)
    torch.testing.assert_close(block, source, atol=1e-8, rtol=0)
    assert (block - other).abs().max() > 1e-6
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 1


def test_student_init_needs_student_layers(tmp_path):
    from seqft.configs import validate_args

    recipe = {"model_name_or_path": "m", "train_file": "t.txt", "output_dir": "o", "student_init": "model"}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    with pytest.raises(RecipeError, match="'student_init' chooses where 'student_layers' copies blocks from"):
        validate_args(*parse_recipe([str(tmp_path / "r.json")])[:3])
    (tmp_path / "r.json").write_text(json.dumps({**recipe, "student_init": "pretrained"}))
    with pytest.raises(RecipeError, match="'student_init' = 'pretrained' is out of range"):
        parse_recipe([str(tmp_path / "r.json")])


@pytest.mark.parametrize(("teacher", "student_init"), [("teacher", "model"), ("teacher_crf", "teacher")])
def test_an_adapted_student_of_selected_blocks_reloads_as_it_was_trained(
    fixtures, tmp_path, capsys, monkeypatch, teacher, student_init
):
    """The adapter's base is the student's own blocks (output_dir/student_base), not the folder they were copied from:
    the adapter folder reloads to the merged model's outputs and predicts as training did. output_dir is relative,
    as in the shipped recipes (the staged base was once written under output_dir twice)."""
    from transformers import AutoModelForTokenClassification

    from seqft.adapters import load_adapter_model
    from seqft.predict import main as predict

    out = tmp_path / "out"
    recipe = {
        "model_name_or_path": str(fixtures / "encoder"),
        "teacher_model_name_or_path": str(fixtures / teacher),
        "student_layers": [1],
        "student_init": student_init,
        "use_crf": teacher == "teacher_crf",
        "peft_config": {"peft_type": "LORA", "r": 2, "target_modules": ["query", "value"]},
        "merge_adapter": True,
        "train_file": str(fixtures / "train.txt"),
        "test_file": str(fixtures / "test.txt"),
        "output_dir": "out",
        "do_train": True,
        "do_predict": True,
        "max_steps": 2,
        "learning_rate": 1e-2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "steps",
        "save_steps": 2,
        "disable_tqdm": True,
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    monkeypatch.chdir(tmp_path)
    assert main([str(tmp_path / "r.json")]) == 0
    assert not (out / "out").exists() and not list(out.glob("tmp-*"))
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(out / "student_base")
    batch = {"input_ids": torch.tensor([[2, 7, 8, 9, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        adapted = load_adapter_model(out)(**batch).logits
        merged = AutoModelForTokenClassification.from_pretrained(out / "merged").eval()(**batch).logits
    torch.testing.assert_close(adapted, merged, atol=1e-5, rtol=0)
    assert predict([str(out), str(fixtures / "test.txt"), "--format", "conll", "-o", str(tmp_path / "p")]) == 0
    header, predicted = (tmp_path / "p").read_text().split("\n\n", 1)
    assert predicted == (out / "test_predictions.txt").read_text()

    # the card's snippet rebuilds this student (it loaded the adapter onto the whole teacher), and names the source
    # of its blocks as the base (student_init 'model': the encoder, not the teacher)
    card = (out / "README.md").read_text()
    assert "model = load_adapter_model(path)" in card and "PeftModel.from_pretrained" not in card
    source = fixtures / ("encoder" if student_init == "model" else teacher)
    assert f"fine-tuned version of `{source}`" in card
    # moved, copied or pushed: the student's blocks are found beside the adapter (its path was recorded absolutely)
    moved = tmp_path / "moved"
    out.rename(moved)
    with torch.no_grad():
        torch.testing.assert_close(load_adapter_model(moved)(**batch).logits, adapted, atol=1e-6, rtol=0)
        checkpoint = load_adapter_model(moved / "checkpoint-2")  # the same blocks, beside the checkpoint's folder
        torch.testing.assert_close(checkpoint(**batch).logits, adapted, atol=1e-6, rtol=0)


@pytest.mark.parametrize("adapter", [False, True])
def test_training_on_from_an_earlier_crf_run(fixtures, tmp_path, adapter):
    """model_name_or_path = a seqft CRF folder with use_crf: its classifier and CRF carry on (same labels), and a
    LoRA adapter trained on it reloads onto that folder's encoder. It used to end in a traceback."""
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification

    from seqft.adapters import load_adapter_model

    out = tmp_path / "out"
    recipe = {
        "model_name_or_path": str(fixtures / "teacher_crf"),
        "use_crf": True,
        "train_file": str(fixtures / "train.txt"),
        "output_dir": str(out),
        "do_train": True,
        "max_steps": 1,
        "learning_rate": 1e-12 if not adapter else 1e-2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    if adapter:
        recipe.update(
            peft_config={"peft_type": "LORA", "r": 2, "target_modules": ["query", "value"]}, merge_adapter=True
        )
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 0
    if not adapter:
        before, after = (load_file(d / "model.safetensors") for d in (fixtures / "teacher_crf", out))
        for name in ("crf.transitions", "crf.start_transitions", "classifier.weight"):
            torch.testing.assert_close(after[name], before[name], atol=1e-6, rtol=0, msg=name)
        return
    batch = {"input_ids": torch.tensor([[2, 7, 8, 9, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        adapted = load_adapter_model(out)(**batch).logits
        merged = AutoModelForTokenClassification.from_pretrained(out / "merged").eval()(**batch).logits
    torch.testing.assert_close(adapted, merged, atol=1e-5, rtol=0)
