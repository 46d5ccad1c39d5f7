"""Distillation: pure losses, label mapping, word alignment, the teacher in a real Trainer, students from teachers."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import PIECES, SENTENCES, SPECIALS, WORDS, tiny_bert_config, tiny_tokenizer
from safetensors import safe_open
from transformers import (
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizerFast,
    DataCollatorForTokenClassification,
)

from seqft import DataError, RecipeError, SeqFTConfig, SeqFTTrainer, distill, labels
from seqft import data as seqdata
from seqft.configs import validate_args
from seqft.parser import parse_recipe

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
RECIPES = Path(__file__).parent.parent / "recipes"


def bert(labels=LABELS, seed=0, dropout=0.0, **kwargs) -> BertForTokenClassification:
    torch.manual_seed(seed)
    config = tiny_bert_config(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        **kwargs,
    )
    return BertForTokenClassification(config)


def other_tokenizer() -> BertTokenizerFast:
    """Another vocabulary (other ids, other splits): 'smith' -> sm ##ith, 'york' -> yo ##rk, 'johns' one piece."""
    split = {"smith": ["sm", "##ith"], "york": ["yo", "##rk"], "acme": ["ac", "##me"]}
    words = [w for w in dict.fromkeys(WORDS) if w not in split] + ["johns"]
    pieces = [p for ps in split.values() for p in ps] + PIECES
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(SPECIALS + words[::-1] + pieces))})


def tokenised(sentences=SENTENCES, label_all_tokens=False, tokenizer=None):
    raw = Dataset.from_dict({"tokens": [w for w, _ in sentences], "tags": [t for _, t in sentences]})
    return seqdata.tokenize_split(raw, tokenizer or tiny_tokenizer(), LABEL2ID, 32, label_all_tokens)


def config(tmp_path, **kwargs) -> SeqFTConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=3,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        distill_alpha=0.5,
        distill_temperature=2.0,
    )
    defaults.update(kwargs)
    return SeqFTConfig(**defaults)


def trainer_for(tmp_path, student, teacher, dataset=None, tokenizer=None, **kwargs) -> SeqFTTrainer:
    tokenizer = tokenizer or tiny_tokenizer()
    return SeqFTTrainer(
        model=student,
        args=config(tmp_path, **kwargs),
        teacher_model=teacher,
        train_dataset=tokenised() if dataset is None else dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )


def collate(trainer, rows):
    """A training batch as the Trainer builds it: unused columns removed, then the (wrapped) collator."""
    dataset = trainer._remove_unused_columns(trainer.train_dataset)
    return dict(trainer.data_collator([dataset[i] for i in rows]))


# ---------------------------------------------------------------------------------------------------------------
# Pure losses


def random_scores(seed=0, shape=(3, 5, 4)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * 3


def manual_kl(student, teacher, mask, temperature):
    p_t = (teacher[mask] / temperature).softmax(-1)
    p_s = (student[mask] / temperature).softmax(-1)
    return (p_t * (p_t.log() - p_s.log())).sum()


def test_kl_is_zero_for_identical_distributions():
    scores = random_scores()
    mask = torch.ones(scores.shape[:2], dtype=torch.bool)
    assert distill.soft_target_loss(scores, scores.clone(), mask, 2.0).abs() < 1e-6
    # logits and log-probabilities (or any per-row shift) describe the same distribution
    shifted = scores + torch.randn(scores.shape[:2] + (1,))
    assert distill.soft_target_loss(scores, shifted, mask, 3.0).abs() < 1e-5
    assert distill.soft_target_loss(scores, scores.log_softmax(-1), mask, 1.0).abs() < 1e-5


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_temperature_softens_both_sides_and_scales_by_t_squared(temperature):
    student, teacher = random_scores(1), random_scores(2)
    mask = torch.ones(student.shape[:2], dtype=torch.bool)
    loss = distill.soft_target_loss(student, teacher, mask, temperature, num_items_in_batch=7)
    expected = temperature**2 * manual_kl(student, teacher, mask, temperature) / 7
    assert torch.allclose(loss, expected, rtol=1e-5)
    # the T² factor, on its own: the same softened distributions at T=1 give the loss divided by T²
    at_one = distill.soft_target_loss(student / temperature, teacher / temperature, mask, 1.0, num_items_in_batch=7)
    assert torch.allclose(loss, temperature**2 * at_one, rtol=1e-5)


def test_masked_positions_are_ignored_and_the_normaliser_is_num_items():
    student, teacher = random_scores(3), random_scores(4)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=torch.bool)
    loss = distill.soft_target_loss(student, teacher, mask, 2.0)
    changed_student, changed_teacher = student.clone(), teacher.clone()
    changed_student[~mask] = 100.0
    changed_teacher[~mask] = float("nan")  # "no target" rows of precomputed teacher columns
    again = distill.soft_target_loss(changed_student, changed_teacher, mask, 2.0)
    assert torch.allclose(loss, again)
    assert torch.allclose(loss, 4 * manual_kl(student, teacher, mask, 2.0) / mask.sum())
    assert torch.allclose(distill.soft_target_loss(student, teacher, mask, 2.0, num_items_in_batch=10), loss * 6 / 10)


def test_losses_do_not_depend_on_how_the_batch_is_split():
    """Σ over micro-batches with the step's num_items_in_batch = the loss of the whole batch (values and grads)."""
    student, teacher = random_scores(5, (4, 6, 3)).requires_grad_(), random_scores(6, (4, 6, 3))
    mask = random_scores(7, (4, 6)) > 0
    total = int(mask.sum())
    whole = distill.soft_target_loss(student, teacher, mask, 2.0, total)
    (grad_whole,) = torch.autograd.grad(whole, student)
    parts = sum(
        distill.soft_target_loss(student[i : i + 2], teacher[i : i + 2], mask[i : i + 2], 2.0, total) for i in (0, 2)
    )
    (grad_parts,) = torch.autograd.grad(parts, student)
    assert torch.allclose(whole, parts, atol=1e-6) and torch.allclose(grad_whole, grad_parts, atol=1e-7)

    hs = [random_scores(s, (4, 6, 8)) for s in range(3)]
    ht = [random_scores(s, (4, 6, 5)) for s in range(10, 13)]
    projection = torch.nn.Linear(8, 5)
    layer_map = {1: 2, 2: 1}
    whole = distill.hidden_state_loss(hs, ht, layer_map, mask, projection, total)
    parts = sum(
        distill.hidden_state_loss(
            [h[i : i + 2] for h in hs], [h[i : i + 2] for h in ht], layer_map, mask[i : i + 2], projection, total
        )
        for i in (0, 2)
    )
    assert torch.allclose(whole, parts, atol=1e-6)
    expected = (
        sum(((projection(hs[s][mask]) - ht[t][mask]) ** 2).mean(-1).sum() for s, t in layer_map.items()) / 2 / total
    )
    assert torch.allclose(whole, expected, atol=1e-6)


def test_layer_maps():
    assert distill.default_layer_map(3, 6) == {1: 2, 2: 4, 3: 6}
    assert distill.default_layer_map(4, 6) == {1: 2, 2: 3, 3: 5, 4: 6}
    assert distill.default_layer_map(3, 6, student_layers=[0, 2, 4]) == {1: 1, 2: 3, 3: 5}
    assert distill.parse_layer_map({"0": 0, "2": "6"}, 3, 6) == {0: 0, 2: 6}
    with pytest.raises(RecipeError, match=r"out of range: student layers are 0\.\.3 and teacher layers 0\.\.6"):
        distill.parse_layer_map({"4": 1}, 3, 6)
    with pytest.raises(RecipeError, match="not a layer number pair"):
        distill.parse_layer_map({"first": 1}, 3, 6)
    with pytest.raises(RecipeError, match=r"'1': 2\.7 is not a layer number pair"):  # int() read it as layer 2
        distill.parse_layer_map({"1": 2.7}, 3, 6)
    assert distill.parse_layer_map({"1": 2.0}, 3, 6) == {1: 2}


def test_a_student_of_other_blocks_maps_its_layers_evenly(tmp_path):
    """student_layers numbers the blocks of model_name_or_path under student_init 'model', not the teacher's:
    the default map read them as teacher blocks (an IndexError at the first step, or a silently wrong map)."""
    student = bert(num_hidden_layers=2)
    args = dict(distill_hidden_weight=1.0, student_layers=[0, 5], student_init="model")
    trainer = trainer_for(tmp_path, student, bert(seed=1, num_hidden_layers=4), **args)
    assert trainer.distill_plan.layer_map == distill.default_layer_map(2, 4) == {1: 2, 2: 4}
    copied = dict(args, student_layers=[0, 3], student_init="teacher")  # blocks copied from the teacher map back
    plan = trainer_for(tmp_path, student, bert(seed=1, num_hidden_layers=4), **copied).distill_plan
    assert plan.layer_map == {1: 1, 2: 4}


def test_a_teacher_with_fewer_positions_than_the_inputs_is_refused_up_front(tmp_path):
    """It failed with a shape error at the first step that held a long sentence, maybe hours into training."""
    short = bert(seed=1, max_position_embeddings=8)
    with pytest.raises(RecipeError, match=r"takes at most 8 tokens, but the student's training inputs reach \d+: set"):
        trainer_for(tmp_path, bert(), short)
    trainer_for(tmp_path, bert(), bert(seed=1))  # 64 positions: every input fits


def test_the_teacher_tokenizer_loads_with_the_teachers_load_arguments(tmp_path, monkeypatch):
    """A teacher from a Hub cache (cache_dir) loaded, its tokenizer not (no cache_dir): "assuming they are the
    same", the student's ids went to a teacher of another vocabulary."""
    teacher = bert()
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer().save_pretrained(tmp_path / "teacher")
    loaded = distill.load_teacher(str(tmp_path / "teacher"), cache_dir=str(tmp_path / "cache"), revision=None)
    seen = {}
    real = seqdata.load_tokenizer
    monkeypatch.setattr(seqdata, "load_tokenizer", lambda path, **kw: seen.update(kw) or real(path, **kw))
    assert distill.load_teacher_tokenizer(loaded) is not None
    assert seen == {"split_special_tokens": True, "cache_dir": str(tmp_path / "cache")}


# ---------------------------------------------------------------------------------------------------------------
# Labels


def test_label_sets_map_by_name_or_fail_naming_the_difference():
    assert distill.label_permutation(LABELS, LABELS) is None
    reordered = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    perm = distill.label_permutation(reordered, LABELS)
    assert [reordered[i] for i in perm] == LABELS
    with pytest.raises(RecipeError) as err:
        distill.label_permutation(LABELS[:5] + ["B-MISC", "I-MISC"], LABELS)
    assert "only the teacher has B-MISC, I-MISC; only the student has B-ORG, I-ORG" in str(err.value)


def test_label_mismatch_fails_at_trainer_construction(tmp_path):
    with pytest.raises(RecipeError, match="only the teacher has B-MISC, I-MISC; only the student has B-ORG, I-ORG"):
        trainer_for(tmp_path, bert(), bert(LABELS[:5] + ["B-MISC", "I-MISC"]))


def test_teacher_with_the_same_labels_in_another_order_is_mapped(tmp_path):
    """A copy of the student whose head lists the labels in another order: after mapping, zero soft loss."""
    student = bert()
    order = [0, 3, 4, 1, 2, 6, 5]  # teacher label j = student label order[j]
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        teacher.classifier.weight.copy_(student.classifier.weight[order])
        teacher.classifier.bias.copy_(student.classifier.bias[order])
    teacher.config.id2label = {j: LABELS[i] for j, i in enumerate(order)}
    teacher.config.label2id = {label: j for j, label in teacher.config.id2label.items()}
    trainer = trainer_for(tmp_path, student, teacher)
    assert trainer.distill_plan.permutation is not None
    batch = collate(trainer, range(4))
    student.train()
    outputs = student(**distill.student_inputs(trainer, {k: v for k, v in batch.items() if k != "labels"}))
    parts = distill.distillation_loss(trainer, student, batch, outputs, None)
    assert parts["loss_soft"] < 1e-5
    # without the mapping, the same teacher would disagree
    unmapped, _ = distill.teacher_log_distribution(teacher, batch)
    mask = batch["labels"] != -100
    assert distill.soft_target_loss(outputs.logits, unmapped, mask, 2.0) > 1e-2


def raw_split(sentences, name="train.txt"):
    """A raw split as seqft.data.load_raw_splits gives it: words, tags, and each sentence's file:line."""
    return Dataset.from_dict(
        {
            "tokens": [w for w, _ in sentences],
            "tags": [t for _, t in sentences],
            "source": [f"{name}:{1 + 9 * i}" for i in range(len(sentences))],
        }
    )


def test_a_teacher_lacking_labels_of_the_data_is_named_with_the_fixes():
    misc = [(["Mary", "likes", "German", "beer", "."], ["B-PER", "O", "B-MISC", "O", "O"])]
    raw = {"train": raw_split(SENTENCES), "validation": raw_split(SENTENCES[:2] + misc + misc, "dev.txt")}
    with pytest.raises(RecipeError) as info:
        distill.check_teacher_labels(bert(), raw)
    message = str(info.value)
    assert message.startswith(
        f"the teacher ({bert().name_or_path or 'BertForTokenClassification'}) does not predict entity type MISC "
        "(tag B-MISC), which the data uses (first at dev.txt:19, validation split). The student learns the "
        f"teacher's labels ({', '.join(LABELS)}), so every label of the data must be one of them: distil from a "
        "teacher fine-tuned with this label, or map or remove it in the data"
    ), message
    assert "add examples" not in message

    two = {"train": raw_split(SENTENCES + [(["Mary", "met", "Zeus", "Bank"], ["B-PER", "O", "B-GOD", "B-FIN"])])}
    with pytest.raises(RecipeError, match=r"entity types GOD, FIN \(tags B-GOD, B-FIN\), which the data uses"):
        distill.check_teacher_labels(bert(), two)


def test_teacher_labels_are_compared_by_entity_type_and_plain_tags_by_name():
    # the data in IOB1 or BIOES: seqft converts it to the teacher's IOB2, so only the entity types must agree
    iob1 = [(["John", "Smith", "lives", "in", "Berlin"], ["I-PER", "I-PER", "O", "O", "I-LOC"])]
    bioes = [(["John", "Smith", "in", "Acme"], ["B-PER", "E-PER", "O", "S-ORG"])]
    distill.check_teacher_labels(bert(), {"train": raw_split(iob1), "test": raw_split(bioes)})
    pos = ["DT", "NN", "VBZ"]
    distill.check_teacher_labels(bert(pos), {"train": raw_split([(["a", "dog", "runs"], pos)])})
    with pytest.raises(RecipeError, match=r"does not predict label JJ, which the data uses \(first at train.txt:1"):
        distill.check_teacher_labels(bert(pos), {"train": raw_split([(["a", "big", "dog"], ["DT", "JJ", "NN"])])})
    # sequence classification: the raw splits' `label` column, names (lists of names for multi-label)
    texts = Dataset.from_dict(
        {"text": ["a", "b"], "label": [["pos"], ["pos", "odd"]], "source": ["t.csv:2", "t.csv:3"]}
    )
    classifier = BertForSequenceClassification(bert(["neg", "pos"]).config)
    with pytest.raises(RecipeError, match=r"does not predict label odd, which the data uses \(first at t.csv:3"):
        distill.check_teacher_labels(classifier, {"train": texts})
    with pytest.raises(
        RecipeError, match=r"is a token tagger \(a label per word\), but this recipe's 'task' trains a seq"
    ):
        distill.check_teacher_labels(bert(["neg", "pos", "odd"]), {"train": texts})


def test_a_base_model_as_teacher_is_refused_for_its_placeholder_label_names(tmp_path):
    base = BertForTokenClassification(tiny_bert_config())  # id2label: LABEL_0..LABEL_4, as a bare encoder loads
    base.save_pretrained(tmp_path / "base")
    expected = (
        "has no label names: its config's id2label holds only transformers' placeholders (LABEL_0..LABEL_4), so it "
        "looks like a base model that was never fine-tuned for token classification"
    )
    with pytest.raises(RecipeError) as info:
        distill.load_teacher(str(tmp_path / "base"))
    assert str(info.value).startswith(f"teacher_model_name_or_path={str(tmp_path / 'base')!r} {expected}")
    with pytest.raises(RecipeError, match=re.escape(expected)):
        distill.check_teacher_labels(base, {"train": raw_split(SENTENCES)})
    with pytest.raises(RecipeError, match=re.escape(expected)):  # not "only the teacher has LABEL_0, ..."
        trainer_for(tmp_path, bert(), base)


def distil_recipe(tmp_path, teacher=None) -> str:
    """A one-step seqft.train recipe distilling into a tiny encoder (`teacher`: a folder; default the encoder)."""
    from helpers import save_tiny_bert, write_conll

    encoder = save_tiny_bert(tmp_path / "encoder")
    recipe = {
        "model_name_or_path": str(encoder),
        "teacher_model_name_or_path": str(teacher or encoder),
        "train_file": str(write_conll(tmp_path / "train.txt")),
        "output_dir": str(tmp_path / "out"),
        "do_train": True,
        "max_steps": 1,
        "use_cpu": True,
        "report_to": "none",
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    return str(tmp_path / "r.json")


def test_a_student_from_a_checkpoint_of_another_label_order_keeps_its_rows_by_name(tmp_path):
    """student_init 'model' takes model_name_or_path's blocks and head: a fine-tuned checkpoint with the teacher's
    labels in another order kept its rows in their places under the teacher's names (F1 1.0 -> 0.11 in the audit).
    Evaluating with the recipe's distill_unlabelled_file gone from disk was a traceback (it matters to training)."""
    from helpers import write_conll

    from seqft.train import main

    teacher = bert()
    teacher.save_pretrained(tmp_path / "teacher")
    order = list(range(len(LABELS)))[::-1]
    turned = bert(labels=[LABELS[i] for i in order])
    turned.load_state_dict({**teacher.state_dict(), **{
        "classifier.weight": teacher.classifier.weight[order], "classifier.bias": teacher.classifier.bias[order]}})  # fmt: skip
    turned.save_pretrained(tmp_path / "turned")
    for folder in ("teacher", "turned"):
        tiny_tokenizer().save_pretrained(tmp_path / folder)
    data = write_conll(tmp_path / "data.txt")
    common = {
        "train_file": str(data),
        "test_file": str(data),
        "do_predict": True,
        "use_cpu": True,
        "report_to": "none",
    }

    def run(name, **recipe) -> str:
        (tmp_path / f"{name}.json").write_text(json.dumps({**common, "output_dir": str(tmp_path / name), **recipe}))
        assert main([str(tmp_path / f"{name}.json")]) == 0
        return (tmp_path / name / "test_predictions.txt").read_text()

    gone = str(tmp_path / "gone.txt")
    teacher_dir = str(tmp_path / "teacher")
    distilling = {"teacher_model_name_or_path": teacher_dir, "distill_unlabelled_file": gone}  # the student's recipe
    expected = run("as_is", model_name_or_path=teacher_dir, do_train=False, **distilling)
    student = run(
        "student",
        model_name_or_path=str(tmp_path / "turned"),
        teacher_model_name_or_path=teacher_dir,
        student_layers=[0, 1],
        student_init="model",
        do_train=True,
        max_steps=1,
        learning_rate=1e-12,
    )
    assert student == expected


def test_seqft_train_refuses_a_base_encoder_as_teacher(tmp_path, capsys):
    from seqft.train import main

    assert main([distil_recipe(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "seqft: error: teacher_model_name_or_path=" in err and "has no label names" in err, err
    assert "LABEL_0, LABEL_1" not in err and "add examples" not in err


def test_a_bioes_teacher_sets_the_students_scheme(tmp_path, capsys):
    """IOB2 data and a BIOES teacher: label_scheme IOB2 (the default) is refused, naming the teacher; with `auto`
    the data is converted to BIOES, so the student's gold and the teacher's soft targets share one scheme."""
    from seqft.train import main

    teacher = bert(labels.complete_label_list(["B-PER", "B-LOC", "B-ORG"], "BIOES"))
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer().save_pretrained(tmp_path / "teacher")
    recipe = distil_recipe(tmp_path, tmp_path / "teacher")
    assert main([recipe]) == 2
    err = capsys.readouterr().err
    assert f"label_scheme is IOB2, but the teacher ({tmp_path / 'teacher'}) predicts BIOES tags" in err, err
    assert main([recipe, "--label_scheme", "auto"]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["label_scheme"] == "BIOES" and list(config["id2label"].values()) == list(
        teacher.config.id2label.values()
    )


# ---------------------------------------------------------------------------------------------------------------
# Word alignment across tokenizers


def test_align_word_targets_uses_each_words_first_teacher_subword():
    teacher_rows = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)  # row r = [2r, 2r + 1]
    teacher_words = [None, 0, 1, 1, 2, 4, None, None]  # word 3 got no teacher piece
    student_words = [-1, 0, 0, 1, 2, 3, 4, -1]
    labels = [-100, 5, -100, 5, 5, 5, 5, -100]
    out = distill.align_word_targets(teacher_rows, teacher_words, student_words, labels)
    assert out.shape == (8, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], [2, 3])  # word 0 -> teacher position 1
    np.testing.assert_array_equal(out[3], [4, 5])  # word 1 -> its first teacher piece (position 2)
    np.testing.assert_array_equal(out[4], [8, 9])  # word 2 -> position 4
    np.testing.assert_array_equal(out[6], [10, 11])  # word 4 -> position 5
    assert np.isnan(out[[0, 2, 5, 7]]).all()  # unlabelled, and word 3 (no teacher target)
    # without a word_ids column, the k-th labelled position is word k
    assert distill.student_word_ids(labels) == [-1, 0, -1, 1, 2, 3, 4, -1]
    with pytest.raises(DataError, match="5 labelled subwords but only 4 words"):
        distill.student_word_ids(labels, num_words=4)


@pytest.mark.parametrize("label_all_tokens", [False, True])
def test_precomputed_targets_align_two_tokenizers_at_the_word_level(label_all_tokens):
    sentences = [(["Johns", "Smith", "lives", "in", "New", "York"], ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"])]
    sentences += SENTENCES[1:3]
    dataset = tokenised(sentences, label_all_tokens)
    teacher, teacher_tok = bert(seed=1, vocab_size=len(other_tokenizer())).eval(), other_tokenizer()
    targets = distill.precompute_teacher_targets(teacher, dataset, teacher_tokenizer=teacher_tok, batch_size=2)
    for row, target in zip(dataset, targets):
        # oracle: the teacher on this sentence alone, read at each word's first teacher subword
        enc = teacher_tok(row["tokens"], is_split_into_words=True, return_tensors="pt")
        log_q = teacher(**enc).logits[0].log_softmax(-1).detach().numpy()
        first = distill.first_subword_positions(enc.word_ids(0))
        for position, (word, label) in enumerate(zip(row["word_ids"], row["labels"])):
            if label == -100:
                assert np.isnan(target[position]).all()
            else:
                np.testing.assert_allclose(target[position], log_q[first[word]], atol=1e-5)
    # 'Johns' is two student pieces (john ##s) but one teacher piece; 'York' the other way round
    first_row = dataset[0]
    assert first_row["word_ids"][:3] == [-100, 0, 0]
    if label_all_tokens:  # both student pieces of 'Johns' are labelled and get the word's distribution
        np.testing.assert_allclose(targets[0][1], targets[0][2])


def test_teacher_with_another_tokenizer_trains_from_precomputed_targets(tmp_path):
    teacher = bert(seed=1, vocab_size=len(other_tokenizer()))
    teacher.save_pretrained(tmp_path / "teacher")
    other_tokenizer().save_pretrained(tmp_path / "teacher")
    trainer = trainer_for(tmp_path, bert(), str(tmp_path / "teacher"))
    plan = trainer.distill_plan
    assert not plan.same_tokenizer and plan.precomputed
    assert distill.TEACHER_COLUMN in trainer.train_dataset.column_names
    batch = collate(trainer, range(3))
    assert batch[distill.TEACHER_COLUMN].shape == batch["labels"].shape + (len(LABELS),)
    labelled = batch["labels"] != -100
    assert torch.isfinite(batch[distill.TEACHER_COLUMN][labelled]).all()
    assert torch.isnan(batch[distill.TEACHER_COLUMN][~labelled]).all()
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss_soft" in entry]
    assert logged and all(entry["loss_soft"] > 0 for entry in logged)

    with pytest.raises(RecipeError, match="the teacher's tokenizer differs from the student's"):
        trainer_for(tmp_path, bert(), str(tmp_path / "teacher"), distill_hidden_weight=1.0)


def test_precompute_teacher_with_the_same_tokenizer_equals_running_it(tmp_path):
    online = trainer_for(tmp_path, bert(), bert(seed=1))
    precomputed = trainer_for(tmp_path, bert(), bert(seed=1), precompute_teacher=True)
    assert precomputed.distill_plan.precomputed and precomputed.distill_plan.same_tokenizer
    assert not online.distill_plan.precomputed
    batch_online, batch_pre = collate(online, [0, 4, 5]), collate(precomputed, [0, 4, 5])
    assert distill.TEACHER_COLUMN in batch_pre and distill.TEACHER_COLUMN not in batch_online
    student = online.model.eval()  # same weights, no dropout anyway: one student output for both
    outputs = student(**{k: v for k, v in batch_online.items() if k != "labels"})
    a = distill.distillation_loss(online, student, batch_online, outputs, 20)
    b = distill.distillation_loss(precomputed, student, batch_pre, outputs, 20)
    assert torch.allclose(a["loss"], b["loss"], atol=1e-6) and a["loss"] > 0


# ---------------------------------------------------------------------------------------------------------------
# The teacher in a real Trainer


def test_teacher_stays_frozen_in_eval_and_outside_the_optimizer_while_the_student_trains(tmp_path):
    teacher = bert(seed=1, dropout=0.1, hidden_size=48, num_attention_heads=2)  # wider: needs the projection
    before = {name: p.detach().clone() for name, p in teacher.named_parameters()}
    student = bert(seed=2)
    student_before = {name: p.detach().clone() for name, p in student.named_parameters()}
    trainer = trainer_for(tmp_path, student, teacher, distill_hidden_weight=0.5, max_steps=4)
    assert trainer.teacher_model is teacher and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(module is not teacher for module in student.modules())  # a plain attribute, not a submodule
    assert isinstance(student.distill_projection, torch.nn.Linear)
    assert trainer.distill_plan.layer_map == {1: 1, 2: 2}

    teacher.train()  # whatever happens elsewhere, the teacher is put back in eval mode where it is used
    trainer.train()

    assert not teacher.training
    for name, p in teacher.named_parameters():
        assert torch.equal(p, before[name]), name
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert {id(p) for p in student.distill_projection.parameters()} <= optimised
    assert not torch.equal(student.classifier.weight, student_before["classifier.weight"])
    assert not torch.equal(
        student.bert.encoder.layer[0].output.dense.weight, student_before["bert.encoder.layer.0.output.dense.weight"]
    )
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all({"loss_soft", "loss_hidden", "loss_hard"} <= set(entry) for entry in logs)

    # the projection is a training aid: not in the saved model
    trainer.save_model(str(tmp_path / "saved"))
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "classifier.weight" in keys and not any(k.startswith("distill_projection") for k in keys)
    # evaluation loss is the hard loss alone
    trainer.model.eval()
    batch = collate(trainer, range(3))
    hard = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.allclose(
        hard,
        SeqFTTrainer.token_loss(trainer.model(**{k: v for k, v in batch.items() if k != "labels"}), batch["labels"]),
    )


def test_teacher_runs_in_eval_mode_at_the_point_of_use(tmp_path):
    teacher = bert(seed=1, dropout=0.3)
    trainer = trainer_for(tmp_path, bert(seed=2), teacher)
    batch = collate(trainer, range(6))
    student = trainer.model.train()
    outputs = student(**{k: v for k, v in batch.items() if k != "labels"})
    losses = []
    for _ in range(3):
        teacher.train()
        losses.append(distill.distillation_loss(trainer, student, batch, outputs, None)["loss_soft"])
        assert not teacher.training
    assert losses[0] == losses[1] == losses[2]  # no dropout in the teacher


def test_distillation_loss_is_the_same_for_a_batch_and_its_micro_batches(tmp_path):
    """Gradient accumulation: Σ over micro-batches (each with the step's num_items_in_batch) = the whole batch."""
    trainer = trainer_for(
        tmp_path, bert(seed=2), bert(seed=1), distill_hidden_weight=0.7, per_device_train_batch_size=6
    )
    student = trainer.model.train()  # dropout is 0: deterministic

    def loss(rows, num_items):
        batch = collate(trainer, rows)
        outputs = student(**distill.student_inputs(trainer, {k: v for k, v in batch.items() if k != "labels"}))
        return distill.distillation_loss(trainer, student, batch, outputs, num_items)

    num_items = sum(int((torch.tensor(r) != -100).sum()) for r in trainer.train_dataset["labels"])
    whole = loss(range(6), num_items)
    parts = [loss(range(i, i + 2), num_items) for i in (0, 2, 4)]
    for key in ("loss", "loss_soft", "loss_hidden"):
        assert torch.allclose(whole[key], sum(p[key] for p in parts), rtol=1e-5), key
    student.zero_grad()
    whole["loss"].backward()
    grad_whole = student.classifier.weight.grad.clone()
    student.zero_grad()
    sum(p["loss"] for p in parts).backward()
    assert torch.allclose(grad_whole, student.classifier.weight.grad, atol=1e-6)


def test_logged_loss_parts_add_up_to_the_loss_under_accumulation_and_stay_out_of_evaluation(tmp_path):
    """loss_hard / loss_soft were averaged over micro-batches, each already a share of the step: under gradient
    accumulation 2 they came out halved. And an evaluation between two training logs carried them as eval_*."""
    logs = {}
    for batch, accumulation in ((6, 1), (3, 2), (2, 3)):
        args = config(
            tmp_path / str(accumulation),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=2,
            learning_rate=1e-9,
            train_sampling_strategy="sequential",
            logging_steps=2,
            eval_strategy="steps",
            eval_steps=1,
        )
        collator = DataCollatorForTokenClassification(tiny_tokenizer())
        trainer = SeqFTTrainer(bert(), args, collator, tokenised(), tokenised(), teacher_model=bert(seed=1))
        trainer.train()
        history = trainer.state.log_history
        assert not [log for log in history if any(key.startswith("eval_loss_") for key in log)], history
        logs[accumulation] = next(log for log in history if "loss_hard" in log)
    for accumulation in (2, 3):
        for key in ("loss", "loss_hard", "loss_soft"):
            assert logs[accumulation][key] == pytest.approx(logs[1][key], rel=1e-4), (accumulation, key)
    assert logs[1]["loss"] == pytest.approx(0.5 * logs[1]["loss_hard"] + 0.5 * logs[1]["loss_soft"], rel=1e-3)


def test_the_run_summary_has_the_loss_parts_of_every_step(tmp_path):
    """The parts of steps after the last logging step were never logged: the end-of-training summary (and so
    train_results.json) had train_loss but no parts. It now has each part's mean over all steps, as train_loss."""
    args = config(tmp_path, per_device_train_batch_size=2, max_steps=3, logging_steps=2, learning_rate=1e-9)
    collator = DataCollatorForTokenClassification(tiny_tokenizer())
    trainer = SeqFTTrainer(bert(), args, collator, tokenised(), teacher_model=bert(seed=1))
    metrics = trainer.train().metrics
    summary = trainer.state.log_history[-1]
    assert summary["train_loss_hard"] == metrics["train_loss_hard"] and "train_loss_soft" in metrics
    parts = 0.5 * metrics["train_loss_hard"] + 0.5 * metrics["train_loss_soft"]
    assert metrics["train_loss"] == pytest.approx(parts, rel=1e-4)
    logged = [log for log in trainer.state.log_history if "loss_hard" in log]
    assert len(logged) == 1  # step 2 only: step 3 reaches the summary alone


def test_a_resumed_run_goes_on_with_the_trained_projection(tmp_path):
    """The projection between hidden states of different widths was left out of checkpoints: a resumed run put a
    fresh one under the optimiser state of the trained one and ended with other weights."""

    def run(resume=None):
        trainer = trainer_for(
            tmp_path,
            bert(),
            bert(seed=5, hidden_size=48),
            max_steps=4,
            per_device_train_batch_size=2,
            optim="adamw_torch",
            learning_rate=0.01,
            save_strategy="steps",
            save_steps=2,
            distill_hidden_weight=1.0,
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer.model.state_dict()

    whole = run()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / distill.PROJECTION_FILE).is_file()
    with safe_open(checkpoint / "model.safetensors", "pt") as fh:
        assert not any(key.startswith(distill.PROJECTION) for key in fh.keys())  # noqa: SIM118 (a safetensors handle)
    resumed = run(str(checkpoint))
    assert whole.keys() == resumed.keys() and f"{distill.PROJECTION}.weight" in whole
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=1e-6, msg=key)


def test_model_init_students_get_the_projection_and_the_teacher_can_come_from_the_arguments(tmp_path):
    """A student from model_init had no projection (train() replaced the model __init__ had added it to) and
    crashed at its first step; a teacher named only in the arguments was silently not used."""
    teacher = bert(seed=5, hidden_size=48)
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer().save_pretrained(tmp_path / "teacher")
    trainer = SeqFTTrainer(
        model_init=lambda: bert(),
        args=config(tmp_path, distill_hidden_weight=1.0, teacher_model_name_or_path=str(tmp_path / "teacher")),
        train_dataset=tokenised(),
        processing_class=tiny_tokenizer(),
        data_collator=DataCollatorForTokenClassification(tiny_tokenizer()),
    )
    assert trainer.teacher_model is not None
    history = trainer.train() and trainer.state.log_history
    assert hasattr(trainer.model, distill.PROJECTION) and all(log["loss_hidden"] > 0 for log in history[:-1])
    with pytest.raises(RecipeError, match="student_layers is set, but there is no teacher: pass teacher_model="):
        SeqFTTrainer(bert(), config(tmp_path, student_layers=[0]), train_dataset=tokenised())


def test_teacher_errors_name_the_fix(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(RecipeError, match="PEFT adapter without its base model.*merge_adapter"):
        distill.load_teacher(str(tmp_path / "adapter"))
    with pytest.raises(RecipeError, match="could not load a token-classification model"):
        distill.load_teacher(str(tmp_path / "missing"))
    student = bert()
    with pytest.raises(RecipeError, match="the teacher is the student itself"):
        trainer_for(tmp_path, student, student)


# ---------------------------------------------------------------------------------------------------------------
# CRF teachers and students


def crf_model(seed=0, layers=2):
    from seqft.modeling import SeqFTCRFConfig, SeqFTCRFForTokenClassification

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    model = SeqFTCRFForTokenClassification(
        SeqFTCRFConfig(
            encoder_config=tiny_bert_config(
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_hidden_layers=layers
            ),
            id2label=dict(enumerate(LABELS)),
            label2id=LABEL2ID,
            label_scheme="IOB2",
            special_token_ids=[i for i in tok.all_special_ids if i != tok.unk_token_id],
            classifier_dropout=0.0,
        )
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model.crf.transitions, model.crf.start_transitions, model.crf.end_transitions):
            p.copy_(torch.randn(p.shape, generator=generator) * 2)
    return model


def test_crf_teacher_targets_are_its_posterior_marginals(tmp_path):
    teacher = crf_model(seed=1).eval()
    trainer = trainer_for(tmp_path, bert(), teacher)
    assert trainer.distill_plan.teacher_crf and not trainer.distill_plan.student_crf
    batch = collate(trainer, range(6))
    log_q, _ = distill.teacher_log_distribution(teacher, batch)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    marginals = teacher.marginals(**inputs)
    on = teacher.crf_mask(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(log_q.exp()[on], marginals[on], atol=1e-5)
    emissions_softmax = teacher.classifier(teacher.encoder(**inputs)[0]).softmax(-1)
    assert not torch.allclose(log_q.exp()[on], emissions_softmax[on], atol=1e-2)  # the CRF matters


def test_crf_student_distils_onto_its_marginals(tmp_path):
    student = crf_model(seed=2)
    same = copy.deepcopy(student).eval()
    trainer = trainer_for(tmp_path, student, same)
    assert trainer.distill_plan.student_crf and trainer.distill_plan.teacher_crf
    batch = collate(trainer, range(6))
    student.train()
    outputs = student(**batch)
    assert distill.distillation_loss(trainer, student, batch, outputs, None)["loss_soft"] < 1e-5

    trainer = trainer_for(tmp_path, student, crf_model(seed=3))
    outputs = student(**batch)
    loss = distill.distillation_loss(trainer, student, batch, outputs, None)["loss"]
    loss.backward()
    assert student.crf.transitions.grad.abs().sum() > 0  # differentiable through forward-backward
    assert student.classifier.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------
# Students built from teachers


def test_student_layers_copy_the_teachers_blocks_embeddings_and_head():
    teacher = bert(num_hidden_layers=4)
    student = distill.build_student_from_teacher(teacher, [0, 2])
    assert len(student.bert.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    assert len(teacher.bert.encoder.layer) == 4 and teacher.config.num_hidden_layers == 4
    pairs = [
        (student.bert.encoder.layer[0], teacher.bert.encoder.layer[0]),
        (student.bert.encoder.layer[1], teacher.bert.encoder.layer[2]),
        (student.bert.embeddings, teacher.bert.embeddings),
        (student.classifier, teacher.classifier),
    ]
    for mine, theirs in pairs:
        for (name, a), (_, b) in zip(mine.named_parameters(), theirs.named_parameters()):
            assert torch.equal(a, b) and a is not b, name
    assert student.bert.encoder.layer[1].attention.self.layer_idx == 1
    with torch.no_grad():
        student.classifier.weight.add_(1.0)
    assert not torch.equal(student.classifier.weight, teacher.classifier.weight)  # a copy, not shared
    enc = tiny_tokenizer()(["john lives in paris"], return_tensors="pt")
    assert student(**enc).logits.shape == (1, enc["input_ids"].shape[1], len(LABELS))

    with pytest.raises(
        RecipeError,
        match=r"expected increasing block numbers in 0\.\.3 \(the model the blocks are copied from, .*has 4\)",
    ):
        distill.build_student_from_teacher(teacher, [0, 4])
    with pytest.raises(RecipeError, match="set use_crf to false"):
        distill.build_student_from_teacher(teacher, [0], use_crf=True)


def test_student_layers_from_a_crf_teacher(tmp_path):
    teacher = crf_model(layers=3)
    student = distill.build_student_from_teacher(teacher, [1, 2], use_crf=True)
    assert student.config.encoder_config.num_hidden_layers == 2 and len(student.encoder.encoder.layer) == 2
    for name, p in student.crf.named_parameters():
        assert torch.equal(p, dict(teacher.crf.named_parameters())[name])
    for (_, a), (_, b) in zip(
        student.encoder.encoder.layer[0].named_parameters(), teacher.encoder.encoder.layer[1].named_parameters()
    ):
        assert torch.equal(a, b)
    student.save_pretrained(tmp_path / "student")
    reloaded = type(student).from_pretrained(tmp_path / "student")
    assert len(reloaded.encoder.encoder.layer) == 2


# ---------------------------------------------------------------------------------------------------------------
# Recipes


@pytest.mark.parametrize("name", ["conll_distill.json", "quickstart_distill.json"])
def test_distillation_recipes_parse_strictly(name):
    model_args, data_args, training_args, recipe = parse_recipe([str(RECIPES / name)])
    validate_args(model_args, data_args, training_args)
    assert training_args.teacher_model_name_or_path and training_args.student_layers == [0, 2, 4]
    assert set(json.loads((RECIPES / name).read_text())) == set(recipe)


def test_support_renormalises_over_the_tags_a_crf_student_can_take():
    student, teacher = random_scores(8), random_scores(9)
    mask = torch.ones(student.shape[:2], dtype=torch.bool)
    support = torch.ones(student.shape, dtype=torch.bool)
    plain = distill.soft_target_loss(student, teacher, mask, 2.0)
    assert torch.allclose(distill.soft_target_loss(student, teacher, mask, 2.0, support=support), plain, atol=1e-6)
    support[:, 0, 1:3] = False  # e.g. I- tags on a sentence's first token under IOB2
    constrained = student.masked_fill(~support, -1e4).requires_grad_()  # what a constrained CRF's marginals give
    loss = distill.soft_target_loss(constrained, teacher, mask, 2.0, support=support)
    expected = 0.0
    for b in range(student.shape[0]):
        for t in range(student.shape[1]):
            keep = support[b, t]
            expected += manual_kl(student[b, t, keep][None, None], teacher[b, t, keep][None, None], mask[:1, :1], 2.0)
    assert torch.allclose(loss, 4 * expected / mask.sum(), rtol=1e-5)
    (grad,) = torch.autograd.grad(loss, constrained)
    assert torch.isfinite(grad).all() and (grad[~support] == 0).all()
    assert distill.soft_target_loss(constrained, teacher, mask, 2.0) > 100  # unrenormalised: a constant no one can fix


def test_crf_student_with_a_plain_teacher_has_a_finite_soft_loss(tmp_path):
    student = crf_model(seed=2)
    trainer = trainer_for(tmp_path, student, bert(seed=1))
    batch = collate(trainer, range(6))
    parts = distill.distillation_loss(trainer, student.train(), batch, student(**batch), None)
    assert 0 < parts["loss_soft"] < 10
    parts["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_distillation_composes_with_crf_lora_and_llrd(tmp_path):
    """Feature matrix: a CRF student with a LoRA adapter and layer-wise rates, distilled from a wider plain teacher."""
    teacher = bert(seed=1, hidden_size=48)
    before = [p.detach().clone() for p in teacher.parameters()]
    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    trainer = SeqFTTrainer(
        model=crf_model(seed=2),
        args=config(tmp_path, layer_decay=0.8, distill_hidden_weight=0.5, max_steps=2),
        peft_config=lora,
        teacher_model=teacher,
        train_dataset=tokenised(),
        processing_class=tiny_tokenizer(),
        data_collator=DataCollatorForTokenClassification(tiny_tokenizer()),
    )
    projection = distill._base(trainer.model).distill_projection
    trainer.train()
    head = [g for g in trainer.optimizer.param_groups if g["layer_name"] == "head"]
    assert any(p is projection.weight for g in head for p in g["params"])
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), before))
    assert {"loss_soft", "loss_hidden", "loss_hard"} <= set(trainer.state.log_history[0])


DEEPSPEED_SCRIPT = """
import os, socket, sys, types
import torch
import torch.distributed as dist

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo", rank=0, world_size=1)
from test_distill import bert, crf_model, tiny_tokenizer
from seqft import distill

batch = dict(tiny_tokenizer()(["john lives in new york", "mary"], return_tensors="pt", padding=True))
for make in (bert, crf_model):
    for stage in (2, 3):
        config = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
                  "zero_optimization": {"stage": stage, "reduce_bucket_size": "auto"}}
        plugin = types.SimpleNamespace(deepspeed_config=config)
        accelerator = types.SimpleNamespace(state=types.SimpleNamespace(deepspeed_plugin=plugin))
        engine = distill._deepspeed_engine(make(seed=1), accelerator)
        assert config["zero_optimization"]["stage"] == stage  # the student's config is not touched
        assert not distill._base(engine).training
        assert distill._is_zero3(engine) == (stage == 3)
        got, hidden = distill.teacher_log_distribution(engine, batch, output_hidden_states=True)
        want, _ = distill.teacher_log_distribution(make(seed=1).eval(), batch)
        assert torch.allclose(got, want, atol=1e-5) and len(hidden) == 3, (make.__name__, stage)
print("OK")
"""


def test_deepspeed_teacher_engines_match_the_plain_teacher(tmp_path):
    """ZeRO-2 (a full replica at stage 0) and ZeRO-3 (sharded, CRF scores gathered read-only), on CPU, one rank."""
    pytest.importorskip("deepspeed")
    script = tmp_path / "ds.py"
    script.write_text(DEEPSPEED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "DS_ACCELERATOR": "cpu"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
