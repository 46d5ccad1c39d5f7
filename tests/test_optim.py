"""Layer-wise learning-rate decay: layer ids per architecture (plain, CRF-wrapped, PEFT), exact group rates through
an HF scheduler, weight-decay exclusions, DeepSpeed config checks."""

from __future__ import annotations

import json

import pytest
import torch
from peft import IA3Config, LoraConfig, PrefixTuningConfig, get_peft_model
from torch import nn
from transformers import (
    AlbertConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    DebertaConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    ModernBertConfig,
    RobertaConfig,
    XLMRobertaConfig,
    get_linear_schedule_with_warmup,
)

from seqft.optim import (
    UnplacedParameterError,
    check_deepspeed_optimizer,
    get_layer_id,
    group_learning_rates,
    llrd_param_groups,
    num_layers_of,
)

SMALL = dict(
    vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, num_labels=3
)


def _config(model_type: str, **overrides):
    kwargs = {**SMALL, **overrides}
    if model_type == "bert":
        return BertConfig(**kwargs)
    if model_type == "roberta":
        return RobertaConfig(**kwargs)
    if model_type == "xlm-roberta":
        return XLMRobertaConfig(**kwargs)
    if model_type == "electra":
        return ElectraConfig(embedding_size=16, **kwargs)
    if model_type == "deberta":
        return DebertaConfig(relative_attention=True, pos_att_type=["c2p", "p2c"], **kwargs)
    if model_type == "deberta-v2":
        return DebertaV2Config(
            relative_attention=True,
            pos_att_type=["c2p", "p2c"],
            position_buckets=8,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            conv_kernel_size=3,  # the xlarge/xxlarge checkpoints' convolution after block 0
            **kwargs,
        )
    if model_type == "distilbert":
        n = kwargs.pop("num_hidden_layers")
        return DistilBertConfig(
            vocab_size=64, dim=32, n_layers=n, n_heads=2, hidden_dim=37, num_labels=kwargs["num_labels"]
        )
    if model_type == "albert":
        return AlbertConfig(embedding_size=16, **kwargs)
    if model_type == "modernbert":
        specials = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
        return ModernBertConfig(global_attn_every_n_layers=1, **specials, **kwargs)
    raise AssertionError(model_type)


# (model type, auto class, expected number of depth steps, {parameter name: expected id}) with two blocks each.
# ALBERT's single shared group counts as one block.
ARCHITECTURES = [
    (
        "bert",
        AutoModelForSequenceClassification,
        2,
        {
            "bert.embeddings.word_embeddings.weight": 0,
            "bert.embeddings.LayerNorm.bias": 0,
            "bert.encoder.layer.0.attention.self.query.weight": 1,
            "bert.encoder.layer.1.output.LayerNorm.weight": 2,
            "bert.pooler.dense.weight": 3,
            "classifier.weight": 3,
        },
    ),
    (
        "roberta",
        AutoModelForSequenceClassification,
        2,
        {
            "roberta.embeddings.position_embeddings.weight": 0,
            "roberta.encoder.layer.1.intermediate.dense.weight": 2,
            "classifier.dense.weight": 3,
            "classifier.out_proj.bias": 3,
        },
    ),
    (
        "xlm-roberta",
        AutoModelForTokenClassification,
        2,
        {
            "roberta.embeddings.token_type_embeddings.weight": 0,
            "roberta.encoder.layer.0.output.dense.bias": 1,
            "classifier.weight": 3,
        },
    ),
    (
        "electra",
        AutoModelForTokenClassification,
        2,
        {
            "electra.embeddings.word_embeddings.weight": 0,
            "electra.embeddings_project.weight": 0,
            "electra.encoder.layer.1.attention.self.key.weight": 2,
            "classifier.bias": 3,
        },
    ),
    (
        "deberta",
        AutoModelForTokenClassification,
        2,
        {
            "deberta.embeddings.word_embeddings.weight": 0,
            "deberta.encoder.rel_embeddings.weight": 0,
            "deberta.encoder.layer.0.attention.self.in_proj.weight": 1,
            "deberta.encoder.layer.1.attention.self.q_bias": 2,
            "classifier.weight": 3,
        },
    ),
    (
        "deberta-v2",
        AutoModelForSequenceClassification,
        2,
        {
            "deberta.embeddings.LayerNorm.weight": 0,
            "deberta.encoder.rel_embeddings.weight": 0,
            "deberta.encoder.LayerNorm.weight": 0,
            "deberta.encoder.layer.0.attention.self.pos_key_proj.weight": 1,
            "deberta.encoder.conv.conv.weight": 1,
            "deberta.encoder.conv.LayerNorm.bias": 1,
            "deberta.encoder.layer.1.attention.self.query_proj.weight": 2,
            "pooler.dense.weight": 3,
            "classifier.weight": 3,
        },
    ),
    (
        "distilbert",
        AutoModelForSequenceClassification,
        2,
        {
            "distilbert.embeddings.word_embeddings.weight": 0,
            "distilbert.transformer.layer.0.attention.q_lin.weight": 1,
            "distilbert.transformer.layer.1.output_layer_norm.weight": 2,
            "pre_classifier.weight": 3,
            "classifier.weight": 3,
        },
    ),
    (
        "albert",
        AutoModelForSequenceClassification,
        1,
        {
            "albert.embeddings.word_embeddings.weight": 0,
            "albert.encoder.embedding_hidden_mapping_in.weight": 0,
            "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight": 1,
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias": 1,
            "albert.pooler.weight": 2,
            "classifier.weight": 2,
        },
    ),
    (
        "modernbert",
        AutoModelForTokenClassification,
        2,
        {
            "model.embeddings.tok_embeddings.weight": 0,
            "model.embeddings.norm.weight": 0,
            "model.layers.0.attn.Wqkv.weight": 1,
            "model.layers.1.attn_norm.weight": 2,
            "model.layers.1.mlp.Wo.weight": 2,
            "model.final_norm.weight": 3,
            "head.dense.weight": 3,
            "classifier.weight": 3,
        },
    ),
]


def _build(model_type: str, auto_class=AutoModelForTokenClassification, **overrides):
    torch.manual_seed(0)
    return auto_class.from_config(_config(model_type, **overrides))


def _ids(model) -> dict[str, int]:
    num_layers = num_layers_of(model)
    return {name: get_layer_id(name, num_layers) for name, _ in model.named_parameters()}


def _group_names(model, groups) -> list[list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in groups]


@pytest.mark.parametrize(
    "model_type, auto_class, num_layers, expected", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES]
)
def test_layer_ids_per_architecture(model_type, auto_class, num_layers, expected):
    model = _build(model_type, auto_class)
    assert num_layers_of(model) == num_layers
    ids = _ids(model)
    assert set(ids.values()) == set(range(num_layers + 2)), "every depth, embeddings to head, is populated"
    assert {name: ids[name] for name in expected} == expected


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "albert", "modernbert", "deberta-v2"])
def test_bare_encoder_has_no_unplaced_parameters(model_type):
    model = _build(model_type, AutoModel)
    ids = _ids(model)
    assert min(ids.values()) == 0 and max(ids.values()) <= num_layers_of(model) + 1


def test_albert_groups_are_the_depth_unit():
    model = _build("albert", num_hidden_layers=4, num_hidden_groups=2)
    assert num_layers_of(model) == 2
    ids = _ids(model)
    assert ids["albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight"] == 1
    assert ids["albert.encoder.albert_layer_groups.1.albert_layers.0.attention.query.weight"] == 2
    assert ids["classifier.weight"] == 3


def test_block_index_beyond_num_layers_is_an_error():
    with pytest.raises(ValueError, match=r"sits in block 3, but the model was said to have 2 block"):
        get_layer_id("bert.encoder.layer.3.output.dense.weight", 2)


class _CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.start_transitions = nn.Parameter(torch.zeros(num_tags))
        self.end_transitions = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))


class _CRFTagger(nn.Module):
    """Stand-in for seqft's encoder-agnostic CRF model: any encoder under `encoder.`, a classifier and a CRF."""

    def __init__(self, encoder_config, nest_config: bool):
        super().__init__()
        self.encoder = AutoModel.from_config(encoder_config)
        self.classifier = nn.Linear(32, 3)
        self.crf = _CRF(3)
        # Either the wrapper config nests the encoder config as a dict, or only the encoder module has a config.
        if nest_config:
            self.config = type("CRFConfig", (), {"model_type": "seqft-crf"})()
            self.config.encoder_config = encoder_config.to_dict()


@pytest.mark.parametrize("nest_config", [True, False], ids=["nested-config", "encoder-config"])
@pytest.mark.parametrize("model_type", ["bert", "electra", "deberta-v2", "distilbert", "albert", "modernbert"])
def test_crf_model_with_encoder_prefix(model_type, nest_config):
    torch.manual_seed(0)
    model = _CRFTagger(_config(model_type), nest_config)
    num_layers = 1 if model_type == "albert" else 2
    assert num_layers_of(model) == num_layers
    ids = _ids(model)
    top = num_layers + 1
    assert ids["crf.transitions"] == ids["crf.start_transitions"] == ids["classifier.weight"] == top
    embeddings = [n for n in ids if ".embeddings." in n]
    assert embeddings and all(ids[n] == 0 for n in embeddings)
    assert set(ids.values()) >= set(range(num_layers + 2))


def test_lora_adapters_take_their_layer_depth_and_frozen_base_is_excluded():
    model = get_peft_model(
        _build("bert", num_hidden_layers=3), LoraConfig(task_type="TOKEN_CLS", target_modules=["query", "value"])
    )
    assert num_layers_of(model) == 3
    ids = _ids(model)
    assert ids["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"] == 1
    assert ids["base_model.model.bert.encoder.layer.2.attention.self.value.lora_B.default.weight"] == 3
    assert ids["base_model.model.classifier.modules_to_save.default.weight"] == 4
    assert ids["base_model.model.bert.embeddings.word_embeddings.weight"] == 0

    groups = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01)
    in_groups = [n for names in _group_names(model, groups) for n in names]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(in_groups) == sorted(trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in in_groups)
    assert [g["layer_name"] for g in groups] == ["head", "head", "layer_02", "layer_01", "layer_00"]
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4]


def test_loraplus_puts_b_matrices_in_their_own_groups_at_the_ratio():
    model = get_peft_model(
        _build("bert", num_hidden_layers=3), LoraConfig(task_type="TOKEN_CLS", target_modules=["query", "value"])
    )
    groups = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01, lora_b_ratio=16)
    names = _group_names(model, groups)
    in_groups = [n for group in names for n in group]
    assert sorted(in_groups) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    expected = {"head": 1e-3, "layer_02": 1e-3, "layer_01": 5e-4, "layer_00": 2.5e-4}
    for group, members in zip(groups, names):
        depth, _, part = group["layer_name"].partition("/")
        assert part in ("", "lora_B")
        assert all((".lora_B." in n) == (part == "lora_B") for n in members), group["layer_name"]
        assert group["lr"] == pytest.approx(expected[depth] * (16 if part else 1))
    assert [g["layer_name"] for g in groups] == [
        "head",
        "head",
        "layer_02",
        "layer_02/lora_B",
        "layer_01",
        "layer_01/lora_B",
        "layer_00",
        "layer_00/lora_B",
    ]
    # without the ratio, B matrices stay in their depth's group
    plain = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01)
    assert not any("/" in g["layer_name"] for g in plain)


def test_loraplus_without_lora_is_an_error():
    model = get_peft_model(
        _build("bert"), IA3Config(task_type="TOKEN_CLS", target_modules=["key", "value"], feedforward_modules=[])
    )
    with pytest.raises(ValueError, match=r"loraplus_lr_ratio is set but .* no trainable LoRA B matrix"):
        llrd_param_groups(model, learning_rate=1e-3, layer_decay=1.0, weight_decay=0.0, lora_b_ratio=16)


def test_ia3_scales_take_their_layer_depth_and_are_not_decayed():
    config = IA3Config(
        task_type="TOKEN_CLS", target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"]
    )
    model = get_peft_model(_build("bert"), config)
    ids = _ids(model)
    assert ids["base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l.default"] == 1
    assert ids["base_model.model.bert.encoder.layer.1.output.dense.ia3_l.default"] == 2

    groups = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.9, weight_decay=0.01)
    for group, names in zip(groups, _group_names(model, groups)):
        if any("ia3_l" in n for n in names):
            assert group["weight_decay"] == 0.0, names


def test_prefix_tuning_prompt_encoder_gets_the_top_depth():
    model = get_peft_model(_build("bert"), PrefixTuningConfig(task_type="TOKEN_CLS", num_virtual_tokens=4))
    ids = _ids(model)
    assert ids["prompt_encoder.default.embedding.weight"] == 3
    groups = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.5, weight_decay=0.0)
    assert {g["layer_name"] for g in groups} == {"head"}


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = type("CustomConfig", (), {"model_type": "my-arch", "num_hidden_layers": 2})()
        self.stem = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.out = nn.Linear(4, 2)


def test_unknown_architecture_names_parameter_model_and_fixes():
    with pytest.raises(ValueError) as info:
        llrd_param_groups(_Custom(), learning_rate=1e-3, layer_decay=0.9, weight_decay=0.0)
    message = str(info.value)
    assert "cannot place parameter 'stem.weight' and 6 more of model type 'my-arch' (_Custom)" in message
    assert "override `SeqFTTrainer.get_layer_id(name, num_layers)`" in message
    assert "set `layer_decay` to null" in message
    with pytest.raises(UnplacedParameterError, match=r"Cannot place parameter 'stem\.weight'"):
        get_layer_id("stem.weight", 2)


def test_custom_get_layer_id_places_an_unknown_architecture():
    def custom(name: str, num_layers: int) -> int:
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return 0 if name.startswith("stem.") else num_layers + 1

    groups = llrd_param_groups(_Custom(), learning_rate=1.0, layer_decay=0.5, weight_decay=0.0, get_layer_id=custom)
    assert [(g["layer_name"], g["lr"]) for g in groups] == [
        ("head", 1.0),
        ("head", 1.0),
        ("layer_01", 1.0),
        ("layer_01", 1.0),
        ("layer_00", 0.5),
        ("layer_00", 0.5),
        ("embeddings", 0.25),
    ]

    with pytest.raises(ValueError, match=r"get_layer_id returned 7 for parameter 'stem.weight'; expected an int"):
        llrd_param_groups(_Custom(), learning_rate=1.0, layer_decay=0.5, weight_decay=0.0, get_layer_id=lambda n, k: 7)


def test_missing_layer_count_is_an_error():
    model = _Custom()
    del model.config
    with pytest.raises(ValueError, match=r"Cannot tell how many transformer blocks _Custom has"):
        num_layers_of(model)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_decay=0.0), r"layer_decay must be in \(0, 1\]"),
        (dict(layer_decay=1.5), r"layer_decay must be in \(0, 1\]"),
        (dict(learning_rate=0.0), r"learning_rate must be > 0"),
        (dict(weight_decay=-0.1), r"weight_decay must be >= 0"),
        (dict(head_learning_rate=0.0), r"head_learning_rate must be > 0"),
        (dict(lora_b_ratio=0.0), r"lora_b_ratio must be > 0"),
    ],
)
def test_argument_ranges(kwargs, message):
    arguments = {**dict(learning_rate=1e-3, layer_decay=0.9, weight_decay=0.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        llrd_param_groups(_build("bert"), **arguments)


def test_no_trainable_parameters_is_an_error():
    model = _build("bert").requires_grad_(False)
    with pytest.raises(ValueError, match=r"has no trainable parameters"):
        llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.9, weight_decay=0.0)


def _scale_by_depth(groups, learning_rate, layer_decay, num_layers, head_learning_rate=None):
    expected = {}
    for g in groups:
        if g["layer_id"] == num_layers + 1:
            expected[g["layer_id"]] = head_learning_rate or learning_rate
        else:
            expected[g["layer_id"]] = learning_rate * layer_decay ** (num_layers - g["layer_id"])
    return expected


@pytest.mark.parametrize("head_learning_rate", [None, 2.0**-6], ids=["head=lr", "own-head-lr"])
def test_group_rates_are_exact_and_survive_the_scheduler(head_learning_rate):
    # Powers of two make every product exact in floating point, so ratios are compared with ==.
    learning_rate, layer_decay, num_layers = 2.0**-10, 0.5, 3
    model = _build("bert", AutoModelForSequenceClassification, num_hidden_layers=num_layers)
    groups = llrd_param_groups(
        model,
        learning_rate=learning_rate,
        layer_decay=layer_decay,
        weight_decay=0.01,
        head_learning_rate=head_learning_rate,
    )
    head_lr = head_learning_rate or learning_rate
    assert groups[0]["layer_name"] == "head" and groups[0]["lr"] == head_lr
    assert [g["layer_id"] for g in groups] == sorted((g["layer_id"] for g in groups), reverse=True)
    expected = _scale_by_depth(groups, learning_rate, layer_decay, num_layers, head_learning_rate)
    assert expected == {4: head_lr, 3: learning_rate, 2: learning_rate / 2, 1: learning_rate / 4, 0: learning_rate / 8}
    assert all(g["lr"] == expected[g["layer_id"]] for g in groups)

    optimizer = torch.optim.AdamW(groups, lr=123.0)  # the default lr must not override the groups'
    assert [g["layer_name"] for g in optimizer.param_groups] == [g["layer_name"] for g in groups]
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=10)
    model(input_ids=torch.tensor([[2, 5, 6, 3]]), labels=torch.tensor([1])).loss.backward()
    for _ in range(9):
        optimizer.step()
        scheduler.step()
        head_now = optimizer.param_groups[0]["lr"]
        assert head_now > 0
        assert scheduler.get_last_lr()[0] == head_now, "the Trainer logs group 0's rate: the head's"
        for g in optimizer.param_groups:
            assert g["lr"] / head_now == expected[g["layer_id"]] / head_lr, g["layer_name"]
        assert set(group_learning_rates(optimizer)) == {"lr/head", "lr/layer_02", "lr/layer_01", "lr/layer_00"} | {
            "lr/embeddings"
        }

    restored = torch.optim.AdamW(
        llrd_param_groups(model, learning_rate=1.0, layer_decay=0.5, weight_decay=0.0, head_learning_rate=None)
    )
    restored.load_state_dict(optimizer.state_dict())
    assert [g["lr"] for g in restored.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_non_dyadic_decay_ratios_after_scheduler_steps():
    learning_rate, layer_decay, num_layers = 3e-5, 0.8, 3
    model = _build("deberta-v2", num_hidden_layers=num_layers)
    groups = llrd_param_groups(model, learning_rate=learning_rate, layer_decay=layer_decay, weight_decay=0.01)
    optimizer = torch.optim.AdamW(groups)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=8)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        head_now = optimizer.param_groups[0]["lr"]
        for g in optimizer.param_groups:
            ratio = layer_decay ** (num_layers - g["layer_id"]) if g["layer_id"] <= num_layers else 1.0
            assert g["lr"] / head_now == pytest.approx(ratio, rel=1e-12)


def test_group_learning_rates_names():
    model = _build("bert")
    optimizer = torch.optim.AdamW(llrd_param_groups(model, learning_rate=1.0, layer_decay=0.5, weight_decay=0.1))
    assert group_learning_rates(optimizer) == {
        "lr/head": 1.0,
        "lr/layer_01": 1.0,
        "lr/layer_00": 0.5,
        "lr/embeddings": 0.25,
    }
    plain = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1}], lr=0.1)
    assert group_learning_rates(plain) == {"lr/group_0": 0.1}


@pytest.mark.parametrize("model_type", ["bert", "deberta", "distilbert", "modernbert"])
def test_no_weight_decay_on_biases_and_norms(model_type):
    model = _build(model_type, AutoModelForSequenceClassification)
    groups = llrd_param_groups(model, learning_rate=1e-3, layer_decay=0.9, weight_decay=0.05)
    decayed = {n for g, names in zip(groups, _group_names(model, groups)) if g["weight_decay"] > 0 for n in names}
    not_decayed = {n for g, names in zip(groups, _group_names(model, groups)) if g["weight_decay"] == 0 for n in names}
    assert decayed and not_decayed and not decayed & not_decayed
    assert all(g["weight_decay"] in (0.0, 0.05) for g in groups)
    norm_params = {
        f"{module_name}.{param_name}"
        for module_name, module in model.named_modules()
        if type(module).__name__.endswith("Norm")
        for param_name, _ in module.named_parameters(recurse=False)
    }
    assert norm_params and norm_params <= not_decayed
    parameters = dict(model.named_parameters())
    assert all(parameters[n].ndim >= 2 and not n.endswith("bias") for n in decayed)
    assert all(parameters[n].ndim <= 1 for n in not_decayed)
    assert "classifier.weight" in decayed


def test_zero3_partitioned_parameters_use_their_full_shape():
    model = _Custom()
    weight = model.out.weight
    weight.data = torch.empty(0)  # what a ZeRO-3 partitioned parameter looks like locally
    weight.ds_shape = torch.Size([2, 4])

    def custom(name: str, num_layers: int) -> int:
        return num_layers + 1

    groups = llrd_param_groups(model, learning_rate=1.0, layer_decay=0.5, weight_decay=0.1, get_layer_id=custom)
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert any(p is weight for p in decayed)


@pytest.mark.parametrize("key", ["layer_decay", "head_learning_rate", "loraplus_lr_ratio"])
def test_recipe_with_per_group_rates_refuses_a_deepspeed_optimizer_block_at_parse_time(key, tmp_path):
    from seqft.configs import SeqFTConfig
    from seqft.errors import RecipeError

    ds = {"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
    with pytest.raises(RecipeError, match='"optimizer" block'):
        SeqFTConfig(output_dir=str(tmp_path), deepspeed=ds, use_cpu=True, **{key: 0.5})
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({**ds, "scheduler": {"type": "WarmupLR"}}))
    with pytest.raises(RecipeError, match='"scheduler" block'):
        SeqFTConfig(output_dir=str(tmp_path), deepspeed=str(path), use_cpu=True, **{key: 0.5})


def test_deepspeed_config_without_optimizer_or_scheduler_passes(tmp_path):
    config = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}
    check_deepspeed_optimizer(None)
    check_deepspeed_optimizer(config)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    check_deepspeed_optimizer(str(path))
    check_deepspeed_optimizer(path)


@pytest.mark.parametrize(
    "blocks, message",
    [
        (["optimizer"], r"bypassing seqft's, so the per-layer learning rates would be silently dropped"),
        (["scheduler"], r"set one learning rate on every parameter group"),
        (["optimizer", "scheduler"], r"Remove the 'optimizer' and 'scheduler' block\(s\)"),
    ],
)
@pytest.mark.parametrize("as_file", [False, True], ids=["dict", "file"])
def test_deepspeed_config_with_optimizer_or_scheduler_fails(tmp_path, blocks, message, as_file):
    config = {"zero_optimization": {"stage": 2}}
    config.update({block: {"type": "AdamW", "params": {"lr": "auto"}} for block in blocks})
    if as_file:
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(config))
        config = str(path)
    with pytest.raises(ValueError, match=message) as info:
        check_deepspeed_optimizer(config)
    assert "layer_decay" in str(info.value)


def test_deepspeed_config_missing_file():
    with pytest.raises(ValueError, match=r"neither a dict, JSON text, nor an existing file"):
        check_deepspeed_optimizer("/nonexistent/ds.json")
    with pytest.raises(ValueError, match=r"'optimizer'"):
        check_deepspeed_optimizer('{"optimizer": {"type": "AdamW"}}')
