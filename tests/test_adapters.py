"""PEFT: configs from recipe dicts, head and CRF trained and saved with the adapter, save/load, merge, resume, LLRD."""

import copy
import json
import sys

import pytest
import torch
from datasets import Dataset
from helpers import SENTENCES, save_tiny_bert, tiny_bert_config, tiny_tokenizer
from peft import LoraConfig, PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open
from transformers import (
    AutoModelForTokenClassification,
    BertForTokenClassification,
    BertModel,
    DataCollatorForTokenClassification,
    DebertaV2Config,
    DebertaV2ForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    PreTrainedConfig,
    RobertaConfig,
    RobertaForTokenClassification,
    pipeline,
)

from seqft import RecipeError, SeqFTConfig, SeqFTCRFForTokenClassification, SeqFTTrainer, adapters
from seqft import data as seqdata
from seqft.train import main

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
LORA = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny encoder inside an importable package (reachable as pkg://tinyseqftpkg/encoder) and a tiny dataset."""
    root = tmp_path_factory.mktemp("adapters")
    (root / "tinyseqftpkg").mkdir()
    (root / "tinyseqftpkg" / "__init__.py").write_text("")
    save_tiny_bert(root / "tinyseqftpkg" / "encoder")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def dataset():
    raw = Dataset.from_dict({"tokens": [w for w, _ in SENTENCES] * 2, "tags": [t for _, t in SENTENCES] * 2})
    label2id = {label: i for i, label in enumerate(LABELS)}
    return seqdata.tokenize_split(raw, tiny_tokenizer(), label2id, 32, False).remove_columns(
        ["tokens", "tags", "length", "num_words_kept"]
    )


def encoder_path(root) -> str:
    return seqdata.resolve_path("pkg://tinyseqftpkg/encoder")


def stock_model(root):
    torch.manual_seed(0)
    id2label = dict(enumerate(LABELS))
    return AutoModelForTokenClassification.from_pretrained(
        encoder_path(root), id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )


def crf_model(root):
    torch.manual_seed(0)
    model = SeqFTCRFForTokenClassification.from_encoder(
        encoder_path(root), id2label=LABELS, label_scheme="IOB2", special_token_ids=tiny_tokenizer().all_special_ids
    )
    if getattr(model.config, "vocab_size", None) is None:
        # peft finds the word embeddings of prompt-learning models by `config.vocab_size` (see adapters.py)
        model.config.vocab_size = model.config.encoder_config.vocab_size
    return model


MODELS = {"stock": stock_model, "crf": crf_model}


def make_trainer(model, spec, dataset, out, **overrides):
    args = dict(
        output_dir=str(out),
        use_cpu=True,
        report_to="none",
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    args.update(overrides)
    return SeqFTTrainer(
        model=model,
        args=SeqFTConfig(**args),
        peft_config=spec,
        train_dataset=dataset,
        data_collator=DataCollatorForTokenClassification(tiny_tokenizer()),
        processing_class=tiny_tokenizer(),
    )


def batch(dataset):
    features = [{key: dataset[i][key] for key in ("input_ids", "attention_mask", "labels")} for i in range(4)]
    return DataCollatorForTokenClassification(tiny_tokenizer())(features)


def eval_logits(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# --- configs ---------------------------------------------------------------------------------------------------


def test_unknown_option_names_the_key_a_suggestion_and_the_valid_options():
    with pytest.raises(RecipeError) as info:
        adapters.check_peft_spec({"peft_type": "LORA", "r": 8, "lora_alpah": 16})
    message = str(info.value)
    assert "unknown option 'lora_alpah' for peft_type 'LORA' (LoraConfig)" in message
    assert "Did you mean 'lora_alpha'?" in message
    assert "Valid options:" in message and "lora_dropout" in message and "target_modules" in message


def test_unknown_method_and_decoder_only_methods_are_errors():
    with pytest.raises(RecipeError, match="unknown peft_type 'LORRA'. Did you mean 'LORA'?"):
        adapters.check_peft_spec({"peft_type": "LORRA"})
    with pytest.raises(RecipeError, match="'ADAPTION_PROMPT' does not apply to encoders"):
        adapters.check_peft_spec({"peft_type": "adaption_prompt"})
    with pytest.raises(RecipeError, match='needs a "peft_type"'):
        adapters.check_peft_spec({"r": 8})
    with pytest.raises(RecipeError, match="task_type 'CAUSAL_LM' is not a sequence-labelling task"):
        adapters.check_peft_spec({"peft_type": "LORA", "task_type": "CAUSAL_LM"})
    with pytest.raises(RecipeError, match="'base_model_name_or_path' is set by seqft"):
        adapters.check_peft_spec({"peft_type": "LORA", "base_model_name_or_path": "x"})


def test_what_would_train_other_than_asked_is_refused_or_targeted_right(root):
    """From an audit: AdaLoRA trained as plain LoRA (nothing ran its rank allocation); LN_TUNING took LoRA's
    query/value and trained copies of those matrices; task_type SEQ_CLS on a tagger saved an adapter that reloaded
    as a sequence classifier; the saved module list named a `score` the model does not have."""
    with pytest.raises(RecipeError, match="ADALORA reallocates ranks through peft's update_and_allocate"):
        adapters.check_peft_spec({"peft_type": "ADALORA", "init_r": 6, "target_r": 2})
    with pytest.raises(RecipeError, match="task_type 'SEQ_CLS' does not fit BertForTokenClassification"):
        adapters.wrap_model(stock_model(root), {"peft_type": "LORA", "task_type": "SEQ_CLS"})
    model = adapters.wrap_model(stock_model(root), {"peft_type": "LN_TUNING"})
    config = model.peft_config["default"]
    assert set(config.target_modules) == {"LayerNorm"} and config.modules_to_save == ["classifier"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("LayerNorm" in n or "classifier" in n for n in trainable), trainable


@pytest.mark.parametrize("init", ["corda", "lora_ga"])
def test_initialisations_that_need_a_pass_seqft_does_not_run_are_refused(init):
    # without peft.preprocess_loraga, peft silently falls back to a plain LoRA init; corda errors deep in peft
    for spec in ({"peft_type": "LORA", "init_lora_weights": init}, LoraConfig(init_lora_weights=init)):
        with pytest.raises(RecipeError, match=f"init_lora_weights '{init}' needs peft.preprocess_") as info:
            adapters.check_peft_spec(spec)
        assert '"eva"' in str(info.value)
    adapters.check_peft_spec({"peft_type": "LORA", "init_lora_weights": "eva"})


@pytest.mark.parametrize("peft_type", ["PREFIX_TUNING", "p_tuning", "PROMPT_TUNING"])
def test_merging_a_prompt_learning_method_is_refused_up_front(peft_type):
    with pytest.raises(RecipeError, match="cannot be merged into the base weights"):
        adapters.check_peft_spec({"peft_type": peft_type}, merge=True)
    adapters.check_peft_spec({"peft_type": peft_type})  # fine without merging
    adapters.check_peft_spec({"peft_type": "IA3"}, merge=True)


def test_merge_adapter_with_prefix_tuning_fails_before_loading_anything(tmp_path):
    recipe = {
        "model_name_or_path": str(tmp_path / "does-not-exist"),
        "train_file": str(tmp_path / "does-not-exist.txt"),
        "output_dir": str(tmp_path / "out"),
        "peft_config": {"peft_type": "PREFIX_TUNING"},
        "merge_adapter": True,
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "out").exists()


OPTION_TYPES = [  # (spec, the start of the error) -- JSON values as a recipe gives them
    (
        {"peft_type": "LORA", "r": "4"},
        'peft_config.r = "4" is a string; expected an integer. Write it without quotes: 4.',
    ),
    ({"peft_type": "LORA", "lora_alpha": "32"}, 'peft_config.lora_alpha = "32" is a string; expected an integer.'),
    ({"peft_type": "LORA", "r": True}, "peft_config.r = true is a boolean; expected an integer."),
    ({"peft_type": "LORA", "use_rslora": 1}, "peft_config.use_rslora = 1 is an integer; expected true or false."),
    ({"peft_type": "LORA", "lora_dropout": "0.1"}, 'peft_config.lora_dropout = "0.1" is a string; expected a number.'),
    (
        {"peft_type": "LORA", "target_modules": ["query", 3]},
        "peft_config.target_modules[1] = 3 is an integer; expected a string.",
    ),
    ({"peft_type": "LORA", "layers_to_transform": 1.5}, "peft_config.layers_to_transform = 1.5 is a number; expected"),
    (
        {"peft_type": "LORA", "modules_to_save": "crf"},
        'peft_config.modules_to_save = "crf" is a string; expected a list of strings or null.',
    ),
    (
        {"peft_type": "LORA", "eva_config": {"rho": "2"}},
        'peft_config.eva_config.rho = "2" is a string; expected a number.',
    ),
    (
        {"peft_type": "IA3", "init_ia3_weights": "true"},
        'peft_config.init_ia3_weights = "true" is a string; expected true or false.',
    ),
    (
        {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 2.5},
        "peft_config.num_virtual_tokens = 2.5 is a number; expected an integer.",
    ),
]


@pytest.mark.parametrize("spec, message", OPTION_TYPES, ids=[m.split(" = ")[0] for _, m in OPTION_TYPES])
def test_option_types_are_checked_against_the_peft_config_fields(spec, message):
    # before: a TypeError deep in peft's layer construction ('<=' not supported between 'str' and 'int'), after the data
    # and the model were loaded; now a RecipeError from check_peft_spec, which seqft.train runs before loading anything
    with pytest.raises(RecipeError) as info:
        adapters.check_peft_spec(spec)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"lora_dropout": 0},  # an int is a float
        {"layers_to_transform": 1},
        {"layers_to_transform": [0, 1], "layers_pattern": "layer"},
        {"init_lora_weights": "pissa_niter_4"},  # peft's Literal documents a pattern: its values are peft's to check
        {"init_lora_weights": False},
        {"layer_replication": [[0, 1], [1, 2]]},  # list[tuple[int, int]] in JSON
        {"task_type": "token_cls", "target_modules": "all-linear", "rank_pattern": {"query": 8}},
        {"eva_config": {"rho": 2, "tau": 0.99, "use_label_mask": True}},
    ],
)
def test_option_types_accept_what_json_can_say(options):
    adapters.check_peft_spec({"peft_type": "LORA", **options})


def test_prompt_learning_sizes_may_be_null_as_peft_defaults_them():
    adapters.check_peft_spec({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": None, "token_dim": None})


def test_a_quoted_number_fails_before_the_data_or_model_is_loaded(root, tmp_path, capsys):
    from helpers import write_conll

    recipe = {
        "model_name_or_path": "pkg://tinyseqftpkg/encoder",
        "train_file": str(write_conll(tmp_path / "train.txt")),
        "output_dir": str(tmp_path / "out"),
        "peft_config": {"peft_type": "LORA", "lora_alpha": "32", "target_modules": ["query"]},
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith('seqft: error: peft_config.lora_alpha = "32" is a string; expected an integer.'), err
    assert not (tmp_path / "out").exists()


def bert_tagger():
    torch.manual_seed(0)
    return BertForTokenClassification(tiny_bert_config())


MODULE_NAMES = [  # (options, the error's text) on a tiny BERT tagger
    (
        {"target_modules": ["qeury"]},
        "peft_config.target_modules: 'qeury' (did you mean 'query'?) matches no module of BertForTokenClassification",
    ),
    (  # peft itself would adapt `value` only and say nothing
        {"target_modules": ["qeury", "value"]},
        "peft_config.target_modules: 'qeury' (did you mean 'query'?) matches no module",
    ),
    (
        {"target_modules": ["attention.self.qeury", "vlaue", "key"]},
        "'attention.self.qeury' (did you mean 'attention.self.query'?), 'vlaue' (did you mean 'value'?) match no",
    ),
    (
        {"target_modules": "qeury"},
        "peft_config.target_modules: the regular expression 'qeury' matches no module name of "
        "BertForTokenClassification",
    ),
    (
        {"target_modules": ["query"], "exclude_modules": ["layer.0.attention.self.qeury"]},
        "peft_config.exclude_modules: 'layer.0.attention.self.qeury' (did you mean 'layer.0.attention.self.query'?)",
    ),
    (
        {"target_modules": ["query"], "modules_to_save": ["LayerNrom"]},
        "peft_config.modules_to_save: 'LayerNrom' (did you mean 'LayerNorm'?) matches no module",
    ),
    (
        {"target_modules": ["query"], "layers_to_transform": [1, 5]},
        "peft_config.layers_to_transform: no module named by target_modules is in layer 5; the targeted modules of "
        "BertForTokenClassification are in layers 0..1 (counted from 0).",
    ),
    (
        {"target_modules": ["query"], "layers_to_transform": [0], "layers_pattern": "layres"},
        "peft_config.layers_pattern: 'layres' numbers no layer of BertForTokenClassification: it names the module "
        "list before the layer number, as 'layer' in 'bert.encoder.layer.0.attention.self.query'.",
    ),
    ({"target_modules": ["query"], "exclude_modules": ["query"]}, "peft_config: nothing is left to adapt"),
]


@pytest.mark.parametrize("options, message", MODULE_NAMES, ids=[m.split(":")[0] for _, m in MODULE_NAMES])
def test_module_names_that_match_nothing_are_recipe_errors(options, message):
    with pytest.raises(RecipeError) as info:
        adapters.wrap_model(bert_tagger(), {"peft_type": "LORA", "r": 2, **options})
    text = str(info.value)
    assert message in text, text
    if "did you mean" in message:
        candidates = "LayerNorm" if "modules_to_save" in message else "query, key, value, dense."
        assert "Candidates in this model: " in text and candidates in text, text


@pytest.mark.parametrize(
    "options",
    [
        {"target_modules": ["attention.self.query", "bert.encoder.layer.0.attention.self.value"]},
        {"target_modules": r".*\.layer\.\d+\.(intermediate\.dense|output\.dense)"},
        {"target_modules": "all-linear"},
        {"target_modules": ["query"], "layers_to_transform": 1, "layers_pattern": "layer"},
        {"target_modules": ["query", "value"], "exclude_modules": ["layer.0.attention.self.value"]},
        {"target_modules": ["query"], "modules_to_save": ["LayerNorm"]},
    ],
)
def test_module_names_peft_matches_pass(options):
    model = adapters.wrap_model(bert_tagger(), {"peft_type": "LORA", "r": 2, **options})
    assert any(isinstance(m, BaseTunerLayer) for m in model.modules())


def test_a_mistyped_target_module_fails_from_the_recipe(root, tmp_path, capsys):
    from helpers import write_conll

    recipe = {
        "model_name_or_path": "pkg://tinyseqftpkg/encoder",
        "train_file": str(write_conll(tmp_path / "train.txt")),
        "output_dir": str(tmp_path / "out"),
        "do_train": True,
        "max_steps": 1,
        "use_cpu": True,
        "report_to": "none",
        "use_crf": True,
        "peft_config": {"peft_type": "LORA", "r": 4, "target_modules": ["qeury", "value"]},
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "seqft: error: peft_config.target_modules: 'qeury' (did you mean 'query'?) matches no module of " in err
    assert "Traceback" not in err


@pytest.mark.parametrize("as_config", [False, True], ids=["dict", "PeftConfig"])
def test_the_callers_spec_is_not_mutated(root, as_config):
    spec = LoraConfig(r=4, target_modules=["query"]) if as_config else {"peft_type": "lora", "r": 4}
    before = copy.deepcopy(spec.to_dict() if as_config else spec)
    config = adapters.build_peft_config(spec, crf_model(root))
    assert (spec.to_dict() if as_config else spec) == before
    assert config is not spec and config.modules_to_save == ["classifier", "crf"]
    assert config.task_type == "TOKEN_CLS"


def _tiny(config_cls, model_cls, **kwargs):
    sizes = dict(vocab_size=43, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    if config_cls is DistilBertConfig:
        sizes = dict(vocab_size=43, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
    return model_cls(config_cls(**sizes, num_labels=3, **kwargs))


FAMILIES = {
    "bert": lambda root: BertForTokenClassification(tiny_bert_config()),
    "roberta": lambda root: _tiny(RobertaConfig, RobertaForTokenClassification, max_position_embeddings=40),
    "deberta-v2": lambda root: _tiny(DebertaV2Config, DebertaV2ForTokenClassification),
    "distilbert": lambda root: _tiny(DistilBertConfig, DistilBertForTokenClassification),
    "seqft-crf": crf_model,
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("peft_type", ["LORA", "IA3"])
def test_default_target_modules_adapt_every_block(root, family, peft_type):
    model = adapters.wrap_model(FAMILIES[family](root), {"peft_type": peft_type})
    adapted = {name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}
    blocks = {int(name.split("layer.")[1].split(".")[0]) for name in adapted}
    assert blocks == {0, 1}, adapted
    assert not any("classifier" in name or "crf" in name for name in adapted)


def test_prefix_tuning_sizes_come_from_the_nested_encoder_config(root):
    config = adapters.build_peft_config({"peft_type": "PREFIX_TUNING"}, crf_model(root))
    assert (config.num_layers, config.token_dim, config.num_attention_heads) == (2, 32, 2)
    assert config.num_virtual_tokens == adapters.DEFAULT_NUM_VIRTUAL_TOKENS
    assert config.modules_to_save == ["classifier", "crf"]


def test_sequence_classifiers_get_seq_cls_and_every_head_module():
    model = _tiny(DistilBertConfig, DistilBertForSequenceClassification)
    config = adapters.build_peft_config({"peft_type": "LORA"}, model)
    assert config.task_type == "SEQ_CLS"
    assert config.modules_to_save == ["pre_classifier", "classifier"]


def test_prefix_tuning_needs_an_encoder_that_takes_a_key_value_cache():
    with pytest.raises(RecipeError, match="DistilBertModel does not accept"):
        adapters.wrap_model(_tiny(DistilBertConfig, DistilBertForTokenClassification), {"peft_type": "PREFIX_TUNING"})


class _Tagger(torch.nn.Module):
    """An encoder-wrapping tagger whose own config, like a composite config, has no `vocab_size`."""

    base_model_prefix = "encoder"

    def __init__(self):
        super().__init__()
        self.config = PreTrainedConfig()
        self.encoder = BertModel(tiny_bert_config())
        self.classifier = torch.nn.Linear(32, 3)


def test_prompt_learning_needs_the_vocabulary_size_on_the_config():
    with pytest.raises(RecipeError, match="by the model config's `vocab_size`, and PreTrainedConfig has none"):
        adapters.wrap_model(_Tagger(), {"peft_type": "PREFIX_TUNING"})
    assert adapters.build_peft_config({"peft_type": "LORA"}, _Tagger()).modules_to_save == ["classifier"]


@pytest.mark.parametrize("family", ["albert", "electra"])
@pytest.mark.parametrize("peft_type", ["P_TUNING", "PROMPT_TUNING"])
def test_prompts_take_the_width_of_word_embeddings_narrower_than_the_hidden_states(family, peft_type):
    """ALBERT (every checkpoint) and ELECTRA-small embed words in fewer dimensions than their hidden states; the
    prompts join the word embeddings, so they take that width (hidden_size failed at the first step)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    sizes = tiny_bert_config().to_dict()
    keep = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    config = AutoConfig.for_model(family, **{k: sizes[k] for k in keep}, embedding_size=16, num_labels=3)
    torch.manual_seed(0)
    model = adapters.wrap_model(AutoModelForTokenClassification.from_config(config), {"peft_type": peft_type})
    assert model.active_peft_config.token_dim == 16
    ids = torch.tensor([[2, 7, 8, 3]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([[-100, 1, 0, -100]]))
    assert out.logits.shape == (1, 4, 3)
    out.loss.backward()


def test_trainable_parameters_are_counted_and_logged(root, caplog):
    with caplog.at_level("INFO", logger="seqft"):
        model = adapters.wrap_model(crf_model(root), LORA)
    counts = adapters.trainable_parameters(model)
    expected = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n or "modules_to_save" in n)
    assert counts["trainable"] == expected
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["share"] == pytest.approx(expected / counts["total"])
    assert f"{expected:,} trainable parameters" in caplog.text and "classifier, crf" in caplog.text


# --- training --------------------------------------------------------------------------------------------------

METHODS = {
    "lora": LORA,
    "ia3": {"peft_type": "IA3"},
    "prefix": {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 3},
    "p_tuning": {"peft_type": "P_TUNING", "num_virtual_tokens": 3, "encoder_hidden_size": 16},
}


@pytest.mark.parametrize(
    "kind, method", [("stock", m) for m in METHODS] + [("crf", "lora"), ("crf", "prefix"), ("crf", "p_tuning")]
)
def test_training_moves_adapter_and_head_and_freezes_the_base(root, dataset, tmp_path, kind, method):
    trainer = make_trainer(MODELS[kind](root), METHODS[method], dataset, tmp_path)
    model = trainer.model
    assert isinstance(model, PeftModel)
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name in before:
        moved = not torch.equal(before[name], after[name])
        assert moved == (name in trainable), name
    heads = {"classifier", "crf"} if kind == "crf" else {"classifier"}
    for head in heads:
        assert any(f"{head}.modules_to_save." in n for n in trainable), head
    adapter = {"lora": "lora_", "ia3": "ia3_l", "prefix": "prompt_encoder", "p_tuning": "prompt_encoder"}[method]
    assert any(adapter in n for n in trainable)
    assert all(adapter in n or "modules_to_save" in n for n in trainable)


@pytest.mark.parametrize("rates", [{"layer_decay": 0.5, "head_learning_rate": 5e-2}, {"loraplus_lr_ratio": 16}])
def test_group_rates_are_logged_for_the_step_they_trained(root, dataset, tmp_path, rates):
    trainer = make_trainer(crf_model(root), LORA, dataset, tmp_path, max_steps=4, logging_steps=1, **rates)
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2, 3, 4]
    head = rates.get("head_learning_rate", 1e-2)
    for entry in steps:  # linear decay over 4 steps: the rate of step k is lr * (1 - (k - 1) / 4), not step k+1's
        scale = 1 - (entry["step"] - 1) / 4
        groups = {key: value for key, value in entry.items() if key.startswith("lr/")}
        assert entry["learning_rate"] == pytest.approx(head * scale)  # the Trainer's: param_groups[0], the top
        if "layer_decay" in rates:
            assert groups == pytest.approx(
                {"lr/head": head * scale, "lr/layer_01": 1e-2 * scale, "lr/layer_00": 5e-3 * scale}
            )
        else:  # LoRA+ alone: the B matrices at 16x, logged too
            assert sorted(set(groups.values())) == pytest.approx([1e-2 * scale, 16e-2 * scale])


def test_loraplus_from_the_recipe_trains_b_matrices_faster(root, dataset, tmp_path):
    trainer = make_trainer(crf_model(root), LORA, dataset, tmp_path, layer_decay=0.5, loraplus_lr_ratio=16)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[names[id(p)]] = group["lr"]
    lr = trainer.args.learning_rate
    for name, rate in rates.items():
        depth = 1 if "encoder.layer.1." in name else 0 if "encoder.layer.0." in name else None
        base = lr if depth is None else lr * 0.5 ** (1 - depth)
        assert rate == pytest.approx(base * 16 if ".lora_B." in name else base), name
    assert any(".lora_B." in n for n in rates) and any(".lora_A." in n for n in rates)
    trainer.train()


def test_llrd_composes_with_lora(root, dataset, tmp_path):
    trainer = make_trainer(crf_model(root), LORA, dataset, tmp_path, layer_decay=0.5, head_learning_rate=0.1)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    by_layer = {}
    for group in optimizer.param_groups:
        by_layer.setdefault(group["layer_name"], set()).update(names[id(p)] for p in group["params"])
        expected = {"head": 0.1, "layer_01": 1e-2, "layer_00": 5e-3}[group["layer_name"]]
        assert group["lr"] == pytest.approx(expected)
    assert {n.split(".modules_to_save")[0] for n in by_layer["head"]} == {
        "base_model.model.classifier",
        "base_model.model.crf",
    }
    assert all("encoder.layer.0." in n and "lora_" in n for n in by_layer["layer_00"])
    assert all("encoder.layer.1." in n and "lora_" in n for n in by_layer["layer_01"])
    trainer.train()
    assert trainer.state.global_step == 3


# --- checkpoints -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MODELS)
def test_adapter_checkpoint_round_trip_restores_head_and_crf(root, dataset, tmp_path, kind):
    trainer = make_trainer(MODELS[kind](root), LORA, dataset, tmp_path / "run")
    trainer.train()
    trainer.save_model()
    out = tmp_path / "run"

    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "pkg://tinyseqftpkg/encoder"
    heads = ["classifier", "crf"] if kind == "crf" else ["classifier"]
    assert set(heads) <= set(saved["modules_to_save"])
    assert (out / adapters.BASE_CONFIG_DIR / "config.json").is_file()
    assert not (out / "model.safetensors").exists()
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    heads = tuple(f"base_model.model.{head}." for head in heads)
    assert all("lora_" in k or k.startswith(heads) for k in keys), keys
    if kind == "crf":
        assert "base_model.model.crf.transitions" in keys

    loaded = adapters.load_adapter_model(out)
    assert not loaded.training
    inputs = batch(dataset)
    torch.testing.assert_close(eval_logits(loaded, inputs), eval_logits(trainer.model, inputs), rtol=0, atol=1e-6)
    if kind == "crf":
        trained = trainer.model.get_base_model().crf.modules_to_save["default"]
        restored = loaded.get_base_model().crf.modules_to_save["default"]
        fresh = crf_model(root).crf
        assert not torch.equal(trained.transitions, fresh.transitions)
        for name in ("transitions", "start_transitions", "end_transitions"):
            torch.testing.assert_close(getattr(restored, name), getattr(trained, name), rtol=0, atol=0)


@pytest.mark.parametrize("init", ["pissa_niter_2", "olora", "eva"])
def test_adapter_checkpoint_round_trip_with_initialisations_that_change_the_base(root, dataset, tmp_path, init):
    # PiSSA/OLoRA rewrite the base weights and peft redoes that when loading; pissa_niter_N's randomised SVD would
    # redo it differently (logits off by ~1e-3) without the fixed seed. EVA keeps the base and starts B at zero.
    torch.manual_seed(123)  # whatever the global RNG holds, the reloaded model predicts what the trained one did
    trainer = make_trainer(stock_model(root), dict(LORA, init_lora_weights=init), dataset, tmp_path / "run")
    trainer.train()
    trainer.save_model()
    torch.manual_seed(456)
    loaded = adapters.load_adapter_model(tmp_path / "run")
    inputs = batch(dataset)
    torch.testing.assert_close(eval_logits(loaded, inputs), eval_logits(trainer.model, inputs), rtol=0, atol=1e-6)
    merged = adapters.merge_and_save(trainer.model, tmp_path / "merged")
    torch.testing.assert_close(eval_logits(merged, inputs), eval_logits(trainer.model, inputs), rtol=0, atol=1e-5)


# The LoRA that came closest to full fine-tuning in benchmarks/README.md (recipes/conll_lora_minilm.json): the
# feed-forward projections at rank-stabilised scaling, every bias and every LayerNorm trained beside them.
FFN_LORA_BIASES_NORMS = {
    "peft_type": "LORA",
    "r": 4,
    "lora_alpha": 8,
    "use_rslora": True,
    "target_modules": r".*\.layer\.\d+\.(intermediate\.dense|output\.dense)",
    "bias": "all",
    "modules_to_save": ["LayerNorm"],
}


@pytest.mark.parametrize("kind", MODELS)
def test_biases_and_layernorms_train_save_reload_and_merge_with_the_adapter(root, dataset, tmp_path, kind):
    trainer = make_trainer(
        MODELS[kind](root), FFN_LORA_BIASES_NORMS, dataset, tmp_path / "run", head_learning_rate=3e-2
    )
    before = snapshot(trainer.model)
    trainer.train()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.endswith("attention.self.query.bias") for n in moved)  # a bias of a layer LoRA does not adapt
    assert any("LayerNorm.modules_to_save" in n for n in moved)
    assert not any(n.endswith("attention.self.query.weight") for n in moved)  # the base weights stay
    trainer.save_model()

    inputs = batch(dataset)
    expected = eval_logits(trainer.model, inputs)
    loaded = adapters.load_adapter_model(tmp_path / "run")
    torch.testing.assert_close(eval_logits(loaded, inputs), expected, rtol=0, atol=1e-6)
    merged = adapters.merge_and_save(trainer.model, tmp_path / "merged")
    torch.testing.assert_close(eval_logits(merged, inputs), expected, rtol=0, atol=1e-5)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(eval_logits(plain, inputs), expected, rtol=0, atol=1e-5)


def _layer_inputs(model, dataset, layer: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """The inputs of `layer` (a module of `model`) over all of `dataset` in one padded batch, and that batch."""
    rows = []
    handle = layer.register_forward_hook(lambda m, args, out: rows.append(args[0]))
    inputs = batch_of(dataset, range(len(dataset)))
    model.eval()
    with torch.no_grad():
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    handle.remove()
    return rows[0], inputs


def batch_of(dataset, indices):
    keys = ("input_ids", "attention_mask", "labels")
    return DataCollatorForTokenClassification(tiny_tokenizer())([{k: dataset[i][k] for k in keys} for i in indices])


@pytest.mark.parametrize("kind", MODELS)
def test_eva_starts_each_adapter_from_the_principal_directions_of_its_inputs(root, dataset, tmp_path, kind):
    spec = dict(LORA, init_lora_weights="eva", eva_config={"rho": 1.0, "tau": 0.9999})  # tau: converge tightly
    trainer = make_trainer(MODELS[kind](root), spec, dataset, tmp_path, per_device_eval_batch_size=4)
    layer = "encoder.layer.1.attention.self.query"
    adapted = next(m for n, m in trainer.model.named_modules() if n.endswith(layer) and hasattr(m, "lora_A"))
    a, b = adapted.lora_A["default"].weight.detach(), adapted.lora_B["default"].weight  # (r, in), (out, r)
    torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0]), rtol=0, atol=1e-5)  # orthonormal rows, not random
    assert torch.count_nonzero(b) == 0  # the model starts as the pretrained one

    # What EVA should find: the top-r principal directions of the layer's (centred) inputs at the labelled positions
    # (peft's use_label_mask); those of every attended position are another subspace on this data.
    with trainer.model.disable_adapter():
        x, inputs = _layer_inputs(trainer.model, dataset, adapted)

    def overlap(positions):  # cosines of the principal angles between span(a) and the top-r directions there
        rows = x[positions] - x[positions].mean(dim=0)
        return torch.linalg.svdvals(a @ torch.linalg.svd(rows, full_matrices=False).Vh[: a.shape[0]].T).min()

    assert overlap(inputs["labels"] != -100) > 0.99
    assert overlap(inputs["attention_mask"].bool()) < 0.9


def test_eva_without_a_training_set_is_an_error(root):
    with pytest.raises(RecipeError, match='"eva" starts from the training set'):
        SeqFTTrainer(
            model=stock_model(root),
            args=SeqFTConfig(output_dir="unused", use_cpu=True, report_to="none"),
            peft_config=dict(LORA, init_lora_weights="eva"),
        )


def test_prefix_tuning_checkpoint_round_trip_with_crf(root, dataset, tmp_path):
    trainer = make_trainer(crf_model(root), METHODS["prefix"], dataset, tmp_path / "run")
    trainer.train()
    trainer.save_model()
    loaded = adapters.load_adapter_model(tmp_path / "run")
    inputs = batch(dataset)
    torch.testing.assert_close(eval_logits(loaded, inputs), eval_logits(trainer.model, inputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["lora", "ia3"])
@pytest.mark.parametrize("kind", MODELS)
def test_merged_model_equals_the_adapter_and_loads_without_peft(root, dataset, tmp_path, kind, method):
    trainer = make_trainer(MODELS[kind](root), METHODS[method], dataset, tmp_path / "run")
    trainer.train()
    peft_model = trainer.model
    inputs = batch(dataset)
    expected = eval_logits(peft_model, inputs)

    merged_dir = tmp_path / "merged"
    adapters.merge_and_save(peft_model, merged_dir, tokenizer=tiny_tokenizer())
    # the trainer's model is untouched: still adapted, same outputs
    assert any(isinstance(m, BaseTunerLayer) for m in peft_model.modules())
    torch.testing.assert_close(eval_logits(peft_model, inputs), expected, rtol=0, atol=0)

    assert not (merged_dir / "adapter_config.json").exists()
    model, info = AutoModelForTokenClassification.from_pretrained(merged_dir, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert not isinstance(model, PeftModel)
    assert not any(
        word in name
        for name, _ in model.named_parameters()
        for word in ("lora", "ia3", "base_layer", "modules_to_save")
    )
    assert isinstance(model, SeqFTCRFForTokenClassification if kind == "crf" else BertForTokenClassification)
    torch.testing.assert_close(eval_logits(model, inputs), expected, rtol=0, atol=1e-5)

    ner = pipeline("token-classification", model=str(merged_dir), device=-1)
    assert isinstance(ner("john smith lives in berlin ."), list)


def test_merge_refuses_prompt_learning(root):
    model = adapters.wrap_model(stock_model(root), METHODS["prefix"])
    with pytest.raises(RecipeError, match="'PREFIX_TUNING' cannot be merged"):
        adapters.merge_and_save(model, "unused")


def test_resume_from_checkpoint_with_peft_matches_an_uninterrupted_run(root, dataset, tmp_path):
    straight = make_trainer(
        crf_model(root), LORA, dataset, tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2
    )
    straight.train()
    checkpoint = tmp_path / "a" / "checkpoint-2"
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt"} <= {
        f.name for f in checkpoint.iterdir()
    }

    resumed = make_trainer(crf_model(root), LORA, dataset, tmp_path / "b", max_steps=4)
    fresh = snapshot(resumed.model)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4

    want = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    got = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    assert want.keys() == got.keys()
    for name in want:
        assert not torch.equal(got[name], fresh[name]), name
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_cli_lora_crf_with_merge(root, tmp_path, caplog):
    from helpers import write_conll

    write_conll(tmp_path / "train.txt", SENTENCES * 2)
    recipe = {
        "model_name_or_path": "pkg://tinyseqftpkg/encoder",
        "train_file": str(tmp_path / "train.txt"),
        "output_dir": str(tmp_path / "out"),
        "do_train": True,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_crf": True,
        "peft_config": {
            "peft_type": "LORA",
            "r": 4,
            "target_modules": ["query", "key", "value", "dense"],
            "init_lora_weights": "eva",
        },
        "merge_adapter": True,
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 0
    # printed at the start under the default log_level ("passive"), as run_ner prints its info
    messages = [r.getMessage() for r in caplog.records if r.name == "seqft" and r.levelname == "INFO"]
    assert any("trainable parameters of" in m for m in messages), messages
    assert any(m.startswith("EVA initialised the LoRA adapters on the training set") for m in messages), messages
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    merged = AutoModelForTokenClassification.from_pretrained(out / "merged")
    assert isinstance(merged, SeqFTCRFForTokenClassification)
    assert isinstance(adapters.load_adapter_model(out), PeftModel)
