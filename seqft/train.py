"""Train, evaluate and predict from a JSON recipe.

    python -m seqft.train recipes/quickstart.json [--field value ...]
    accelerate launch -m seqft.train recipes/conll_lora.json

main(): parse -> validate -> load data, tokenizer, model -> trainer -> train -> save -> evaluate -> predict.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import shutil
import sys
from importlib import metadata

import datasets
import transformers
from transformers import AutoConfig, AutoModelForTokenClassification, DataCollatorForTokenClassification, set_seed

from . import adapters, checkpoints, distill, seqcls
from . import data as seqdata
from . import windows as seqwin
from .configs import validate_args
from .errors import Interrupted, RecipeError, SeqFTError, other_head_size, run_cli
from .labels import missing_tag, placeholder_names
from .metrics import build_compute_metrics, metric_names
from .parser import parse_recipe, resolved_recipe
from .trainer import SeqFTTrainer

logger = logging.getLogger("seqft")
VERSIONED = ("seqft", "transformers", "torch", "accelerate", "datasets", "peft", "deepspeed", "seqeval", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def resolved_record(model_args, data_args, training_args) -> dict:
    """Every field's value (no secrets), versions, data fingerprints: what seqft_recipe.json holds."""
    files = {}
    training = training_args.do_train  # the teacher and its unlabelled sentences matter to training only
    for split, spec in (
        ("train", data_args.train_file),
        ("validation", data_args.validation_file),
        ("test", data_args.test_file),
        ("distill_unlabelled", training_args.distill_unlabelled_file if training else None),
        ("label_names", getattr(data_args, "label_names_file", None)),  # it fixes the label order
    ):
        if spec:
            files[split] = {"spec": spec, **seqdata.fingerprint(seqdata.resolve_path(spec))}
    teacher = training_args.teacher_model_name_or_path if training else None
    weights = seqdata.fingerprint_weights(seqdata.resolve_path(teacher)) if teacher else None
    if weights:  # a teacher retrained in place keeps its path
        files["teacher_weights"] = {"spec": teacher, **weights}
    return {
        "recipe": resolved_recipe(model_args, data_args, training_args),
        "versions": library_versions(),
        "data_files": files,
    }


def write_resolved_recipe(model_args, data_args, training_args, record: dict | None = None) -> str:
    """output_dir/seqft_recipe.json (`resolved_record`, unless the caller has it already); for a run that does not
    train, seqft_eval_recipe.json, so that evaluating a trained run into its own folder keeps that run's record."""
    record = record or resolved_record(model_args, data_args, training_args)
    os.makedirs(training_args.output_dir, exist_ok=True)
    name = "seqft_recipe.json" if training_args.do_train else "seqft_eval_recipe.json"
    path = os.path.join(training_args.output_dir, name)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=False)
    return path


def checkpoint_config(model_path: str, load_kwargs: dict):
    """The config of `model_name_or_path`, read once for `known_labels` and `trained_scheme`; an adapter-only folder
    is an error (its config is the adapter's, not a model's)."""
    if os.path.isfile(os.path.join(model_path, "adapter_config.json")) and not os.path.isfile(
        os.path.join(model_path, "config.json")
    ):
        raise RecipeError(
            f"'model_name_or_path' = {model_path!r} holds a PEFT adapter without its base model: point it at the "
            "run's merged/ folder (merge_adapter), or predict with `python -m seqft.predict`, which loads adapters."
        )
    try:
        return AutoConfig.from_pretrained(model_path, **load_kwargs)
    except (OSError, ValueError) as err:  # e.g. outputs/quickstart before the run that writes it, read as a Hub id
        raise RecipeError(
            f"'model_name_or_path' = {model_path!r} could not be loaded: it is neither a model folder here nor a "
            f"cached Hub model ({str(err).splitlines()[0]}). If a recipe writes it (an output_dir), run that first."
        ) from None


def known_labels(config) -> list[str] | None:
    """The label list of an already fine-tuned checkpoint's config (None for a bare encoder)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    if not names or placeholder_names(names):
        return None
    return names


def trained_scheme(config) -> str | None:
    """The label scheme a fine-tuned model was trained in: its config's `label_scheme`, which seqft saves with every
    model; None for a model trained elsewhere, whose config does not say."""
    return getattr(config, "label_scheme", None)


def other_scheme_hint(checkpoint_labels, checkpoint_scheme: str | None, label_names, scheme: str) -> str:
    """Advice when a fine-tuned model's labels are the data's entity types in the other prefix scheme it was trained
    in (a BIOES model trained on with IOB2 data): setting that scheme keeps its whole classifier. Else ""."""
    from .labels import SCHEME_PREFIXES, complete_label_list

    prefixed = SCHEME_PREFIXES.keys()
    if checkpoint_scheme == scheme or checkpoint_scheme not in prefixed or scheme not in prefixed:
        return ""
    if set(complete_label_list(label_names, checkpoint_scheme)) != set(checkpoint_labels):
        return ""
    return (
        f" It was trained in {checkpoint_scheme} for the data's entity types: set 'label_scheme': "
        f"'{checkpoint_scheme}' to keep its classifier (the data is converted)."
    )


def load_model(model_args, label_names: list[str], scheme: str, tokenizer, load_kwargs: dict):
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    path = seqdata.resolve_path(model_args.model_name_or_path)
    if model_args.use_crf:
        from .modeling import SeqFTCRFForTokenClassification

        model = SeqFTCRFForTokenClassification.from_encoder(
            path,
            encoder_config=AutoConfig.from_pretrained(seqdata.resolve_path(model_args.config_name), **load_kwargs)
            if model_args.config_name  # the encoder's configuration from there, as for a softmax head below
            else None,
            id2label=id2label,
            label_scheme=scheme,
            # [UNK] is a word, not a special position: the CRF must label it
            special_token_ids=sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}),
            classifier_dropout=model_args.classifier_dropout,
            crf_constraints=model_args.crf_constraints,
            **load_kwargs,
        )
    else:
        config = AutoConfig.from_pretrained(
            seqdata.resolve_path(model_args.config_name) or path,
            id2label=id2label,  # sets num_labels (passing both warns against the checkpoint's own label count)
            label2id=label2id,
            **load_kwargs,
        )
        if model_args.classifier_dropout is not None:
            config.classifier_dropout = model_args.classifier_dropout
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **load_kwargs
            )
        except RuntimeError as err:
            trained = AutoConfig.from_pretrained(path, **load_kwargs)  # as saved: `config` has the data's labels
            hint = other_scheme_hint(known_labels(trained) or [], trained_scheme(trained), label_names, scheme)
            error = other_head_size(err, model_args.model_name_or_path, len(label_names), hint)
            if error is None:
                raise
            raise error from None
    model.config.label_scheme = scheme
    return model


def carry_over_rows(model, checkpoint_labels: list[str], label_names: list[str]) -> int:
    """A fine-tuned softmax classifier (token or sequence) whose rows answer `checkpoint_labels`, in a run whose
    labels are `label_names`, as many (another set, or the same in another order, as a `label_names_file` gives):
    its rows loaded in the checkpoint's order, so they served other labels (old `B-LOC` as new `O`). Keep the rows of
    the labels both lists have, matched by name, start the others fresh, and name the rows in the config. Returns
    the number of rows kept."""
    import torch
    from torch import nn

    candidates = [getattr(model, "classifier", None), getattr(getattr(model, "classifier", None), "out_proj", None)]
    candidates.append(getattr(model, "score", None))  # the output layer: BERT-style, RoBERTa-style heads, `score`
    head = next((m for m in candidates if isinstance(m, nn.Linear) and m.out_features == len(checkpoint_labels)), None)
    if head is None:
        return 0
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    old = {name: i for i, name in enumerate(checkpoint_labels)}
    weight, bias = head.weight.detach().clone(), None if head.bias is None else head.bias.detach().clone()
    with torch.no_grad():
        nn.init.normal_(head.weight, std=getattr(model.config, "initializer_range", 0.02))
        if head.bias is not None:
            head.bias.zero_()
        for i, name in enumerate(label_names):
            if name in old:
                head.weight[i] = weight[old[name]]
                if bias is not None:
                    head.bias[i] = bias[old[name]]
    return sum(name in old for name in label_names)


def resolve_max_length(requested: int | None, tokenizer, config, virtual_tokens: int = 0) -> int:
    """max_seq_length, or the longest input the tokenizer and the model's position embeddings allow (<= 512), less
    the `virtual_tokens` a prompt-learning adapter puts before every input."""
    positions = (seqwin.model_positions(config) or 512) - virtual_tokens
    if virtual_tokens and positions < 8:  # max_seq_length's least; the error would name a length nobody set
        raise RecipeError(
            f"peft_config: num_virtual_tokens = {virtual_tokens} leaves {max(positions, 0)} of the model's "
            f"{positions + virtual_tokens} positions for the text: use at most {positions + virtual_tokens - 8}."
        )
    if requested is not None:
        if requested > positions:
            prompts = f" once the adapter's {virtual_tokens} virtual tokens are placed" if virtual_tokens else ""
            raise RecipeError(
                f"'max_seq_length' = {requested} exceeds the model's {positions} positions{prompts}; use at most "
                f"{positions} (longer sentences are split into overlapping windows, see 'stride')."
            )
        return requested
    return min(tokenizer.model_max_length, 512, positions)


def word_predictions(
    split, predictions, id2label: dict, scheme: str, constraints=None
) -> tuple[list[list[str | None]], int]:
    """Word tags of every sentence of a windowed split, in the input's order, and the number of words no window
    held (only with truncate_long_sentences; they are tagged O, or None for plain tags). Each word comes from the
    window where it has the most context; with a CRF the merged sentence is decoded valid in its scheme
    (seqft.windows)."""
    fill = missing_tag(scheme)
    predicted, _, missing = seqwin.word_predictions(
        seqwin.WindowedSplit(split), predictions, id2label, constraints, fill=fill
    )
    return predicted, missing


def write_predictions(path: str, examples, predicted: list[list[str]]) -> None:
    """CoNLL-style `word gold predicted` for every word of `examples` (the untokenised split), in its order.

    A word holding whitespace (JSON or Hub data may have `"New York"` as one word) is written with `_` in its place,
    so that each word stays one line of three fields. A word with no prediction (None: plain tags cut by
    truncate_long_sentences) is written `_`."""
    joined = 0
    with open(path, "w", encoding="utf-8") as fh:
        for words, gold, pred in zip(examples["tokens"], examples["tags"], predicted):
            for w, g, p in zip(words, gold, pred):
                if any(c.isspace() for c in w):
                    w, joined = "_".join(w.split()), joined + 1
                fh.write(f"{w} {g} {'_' if p is None else p}\n")
            fh.write("\n")
    if joined:
        logger.warning(f"{path}: {joined} word(s) held whitespace; written with '_' in its place, one word per line.")


def print_table(title: str, metrics: dict) -> None:
    keys = [k for k in metrics if not any(k.endswith(s) for s in ("_runtime", "_per_second", "_steps_per_second"))]
    width = max(len(k) for k in keys) if keys else 10
    lines = [f"***** {title} *****"] + [
        f"  {k:<{width}} {v:>10.4f}" if isinstance(v, float) else f"  {k:<{width}} {v!s:>10}"
        for k, v in metrics.items()
        if k in keys
    ]
    print("\n".join(lines), flush=True)


def check_best_metric(metric: str, names: list[str]) -> None:
    """`metric_for_best_model` must name a key the evaluation returns (with or without the `eval_` prefix)."""
    allowed = ["loss", *names]
    if metric.removeprefix("eval_") not in allowed:
        close = difflib.get_close_matches(metric.removeprefix("eval_"), allowed, n=1, cutoff=0.6)
        raise RecipeError(
            f"'metric_for_best_model' = {metric!r} is not a metric of this evaluation."
            + (f" Did you mean '{close[0]}'?" if close else "")
            + f" Choose one of: {', '.join(allowed)}."
        )


def prepare_labels(
    raw,
    data_args,
    seq_cls: bool,
    fixed_labels,
    checkpoint_labels,
    labels_from: str,
    fixed_scheme: str | None = None,
    checkpoint_scheme: str | None = None,
    new_head: bool = False,
):
    """The splits with their labels converted, the label list and the scheme (`seqft.data` / `seqft.seqcls`).

    `fixed_labels` (a teacher's, or an evaluated model's) fix the list. `checkpoint_labels`, those of a fine-tuned
    model the run trains on from: when the data's labels are the same set in another order, its order is kept, so
    each row of its classifier keeps the label it was trained for; a different set is a warning (with advice from
    `checkpoint_scheme`, the scheme it was trained in; `new_head`: a CRF run, which builds a new head then).
    """

    def prepare(labels):
        if seq_cls:  # `scheme` holds the problem type: single_label_classification or multi_label_classification
            return seqcls.prepare_labels(raw, data_args, labels)
        scheme = fixed_scheme if labels is fixed_labels else None  # the scheme of fixed labels' model
        return seqdata.prepare_labels(raw, data_args.label_scheme, labels, labels_from, scheme)

    prepared, label_names, scheme = prepare(fixed_labels)
    if checkpoint_labels is None or label_names == checkpoint_labels:
        return prepared, label_names, scheme
    if set(label_names) == set(checkpoint_labels):
        if getattr(data_args, "label_names_file", None):
            logger.warning(
                f"{labels_from} lists the labels of {data_args.label_names_file} in its own order, which its "
                f"classifier rows follow: that order is kept ({', '.join(checkpoint_labels)}), and a class_weights "
                "list is read in it."
            )
        return prepare(checkpoint_labels)
    fate = (
        "its encoder carries on under a new classifier and CRF."
        if new_head
        else "its classifier rows carry over for the labels both have, matched by name, and the others start fresh "
        "(when their number differs, set ignore_mismatched_sizes for a new classifier, or start from the base "
        "encoder)."
    )
    logger.warning(
        f"{labels_from} was fine-tuned for other labels ({', '.join(checkpoint_labels)}) than the data's "
        f"({', '.join(label_names)}): {fate}"
        + other_scheme_hint(checkpoint_labels, checkpoint_scheme, label_names, scheme)
    )
    return prepared, label_names, scheme


def check_splits(training_args, raw) -> None:
    """Evaluation asked for without its split: an error during training, a warning for do_eval / do_predict."""
    if training_args.eval_strategy != "no" and "validation" not in raw:
        strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
        raise RecipeError(
            f"'eval_strategy' = '{strategy}' evaluates during training, but there is no validation data: set "
            "'validation_file' (or 'validation_split_percentage'), or set 'eval_strategy': 'no'."
        )
    for flag, split, keys in (
        ("do_eval", "validation", "'validation_file' or 'validation_split_percentage'"),
        ("do_predict", "test", "'test_file' or 'test_split_percentage'"),
    ):
        if getattr(training_args, flag) and split not in raw:
            logger.warning(f"'{flag}' is set but there is no {split} data, so it is skipped: set {keys}.")


def run(argv=None) -> dict:
    model_args, data_args, training_args, _ = parse_recipe(argv)
    validate_args(model_args, data_args, training_args)
    if model_args.peft_config:  # unknown options, merge_adapter with an unmergeable method: fail before loading
        adapters.check_peft_spec(model_args.peft_config, merge=model_args.merge_adapter)
    if training_args.hub_token:  # the Trainer pickles its arguments into training_args.bin, which push_to_hub uploads
        raise RecipeError(
            "'hub_token' would be saved in training_args.bin and pushed: set HF_TOKEN or run `hf auth login`."
        )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:  # each process would train alone and write output_dir
        raise RecipeError(
            f"{launched} processes were launched but did not join one process group: on a machine without GPUs "
            "set 'use_cpu': true (or pass --use_cpu true)."
        )

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    # seqft's own messages (trainable parameters, EVA, teacher tagging, ...) are info on the main process by default,
    # as run_ner's are; transformers and datasets keep their level unless log_level says otherwise.
    passive_main = training_args.log_level == "passive" and training_args.should_log
    logger.setLevel(logging.INFO if passive_main else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    set_seed(training_args.seed)
    # "last" -> the last complete checkpoint in output_dir (or None); a path must be a complete checkpoint
    resume = (
        checkpoints.resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
        if training_args.do_train
        else None
    )
    fresh = training_args.do_train and resume is None  # also 'last' with no checkpoint: earlier files are stale
    resuming_last = training_args.resume_from_checkpoint == checkpoints.RESUME_LAST
    if fresh and not training_args.overwrite_output_dir:
        checkpoints.refuse_previous_run(training_args.output_dir, resuming_last)

    load_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    if model_args.token:
        load_kwargs["token"] = model_args.token
    if model_args.trust_remote_code:
        load_kwargs["trust_remote_code"] = True
    model_path = seqdata.resolve_path(model_args.model_name_or_path)
    if os.path.isdir(model_path) and not os.path.isabs(model_path):
        # the adapter config and the card record where the base came from: valid from any working directory
        model_path = model_args.model_name_or_path = os.path.abspath(model_path)
    record = None  # the resolved recipe, once computed (it hashes every data file and a local teacher's weights)
    if resume:  # the checkpoint's recipe: only how long the run goes on and its outputs may differ
        record = resolved_record(model_args, data_args, training_args)
        checkpoints.check_resume(resume, record, training_args.world_size)
        step = checkpoints.finished_at(resume, record, training_args.output_dir)
        if step is not None and not os.path.isfile(os.path.join(training_args.output_dir, "train_results.json")):
            raise RecipeError(
                f"{resume} is the last step ({step}) of its run, but the run's final model and results were never "
                "written (the job stopped between its last save and its outputs). The trained weights are in that "
                "checkpoint; to write the outputs, train afresh with 'overwrite_output_dir': true."
            )
        if step is not None:  # a requeued job that had finished: nothing to train, nothing to overwrite
            logger.warning(
                f"{resume} ended its run at step {step}, and this recipe asks for no more: nothing to train. The "
                "outputs in output_dir are left as they are; raise max_steps or num_train_epochs to train on."
            )
            return {}

    seq_cls = data_args.task == seqcls.TASK  # sequence classification: seqft/seqcls.py at each data/model step
    if seq_cls and not training_args.do_train:  # its problem type and threshold, before the data is read by them
        seqcls.evaluate_as_trained(data_args, model_path, load_kwargs)
    # every row first: the label list comes from all of train, as run_ner.py takes it, then max_*_samples apply
    raw = (seqcls.load_raw_splits if seq_cls else seqdata.load_raw_splits)(
        data_args, training_args.seed, cache_dir=model_args.cache_dir, token=model_args.token, limit=False
    )
    config = checkpoint_config(model_path, load_kwargs)
    checkpoint_labels = known_labels(config)  # a fine-tuned model's; None for a base encoder
    fixed_labels = None if training_args.do_train else checkpoint_labels
    fixed_scheme = trained_scheme(config) if fixed_labels is not None else None
    if not training_args.do_train and model_args.use_crf and not seq_cls:
        model_type = getattr(config, "model_type", None)
        if model_type != "seqft_crf":  # from_encoder would put a new classifier and CRF on its encoder
            raise RecipeError(
                f"'use_crf' is set and 'do_train' is false, but {model_args.model_name_or_path!r} has no CRF (a "
                f"{model_type} model): its head would be new and score at random. Remove 'use_crf' to evaluate it "
                "as it is, or set 'do_train': true to train a CRF on it."
            )
    if training_args.do_train and not model_args.use_crf and getattr(config, "model_type", None) == "seqft_crf":
        # it would load as it is and train on with its CRF, while the recipe, its checks and the card say softmax
        raise RecipeError(
            f"'model_name_or_path' = {model_args.model_name_or_path!r} has a CRF head, but 'use_crf' is false: set "
            "'use_crf': true to train on with it (its classifier and CRF are kept when the labels are the same)."
        )
    if not training_args.do_train and fixed_labels is None:
        raise RecipeError(
            f"'do_train' is false, but 'model_name_or_path' = {model_args.model_name_or_path!r} has no label names "
            "(its config.id2label is empty or LABEL_0, LABEL_1, ...): it is a base encoder, whose new head would "
            "score at random. Set 'do_train': true, or point 'model_name_or_path' at a fine-tuned model's folder."
        )
    check_splits(training_args, raw)
    teacher = None  # distillation: the student learns the teacher's label list, in its order
    if training_args.teacher_model_name_or_path and training_args.do_train:
        teacher = distill.load_teacher(training_args.teacher_model_name_or_path, **load_kwargs)
        base = teacher.get_base_model() if hasattr(teacher, "get_base_model") else teacher
        fixed_labels, fixed_scheme = distill.label_names(teacher), trained_scheme(base.config)
        if seq_cls and data_args.label_names_file:  # the teacher is read by label name: the names file's order holds
            names = seqcls.read_label_names(data_args.label_names_file)
            fixed_labels = names if set(names) == set(fixed_labels) else fixed_labels
        distill.check_teacher_labels(teacher, raw)  # before prepare_labels, whose advice is for training data
    student_from_teacher = teacher is not None and training_args.student_layers is not None
    labels_from = (
        f"the teacher ({training_args.teacher_model_name_or_path})"
        if teacher is not None
        else f"model_name_or_path ({model_args.model_name_or_path})"
    )
    # a fine-tuned model trained on keeps its label order; a teacher's or an evaluated model's labels are fixed
    keep_order = checkpoint_labels if fixed_labels is None else None
    prepared, label_names, scheme = prepare_labels(
        raw,
        data_args,
        seq_cls,
        fixed_labels,
        keep_order,
        labels_from,
        fixed_scheme,
        trained_scheme(config),
        new_head=model_args.use_crf,
    )
    raw = seqdata.limit_samples(prepared, data_args)
    label2id = {name: i for i, name in enumerate(label_names)}
    logger.info(f"{len(label_names)} labels ({scheme}): {', '.join(label_names)}")
    if training_args.metric_for_best_model:  # checked now, not at the first evaluation after training steps
        names = (
            seqcls.metric_names(label_names, scheme)
            if seq_cls
            else metric_names(label_names, scheme, data_args.return_entity_level_metrics)
        )
        check_best_metric(training_args.metric_for_best_model, names)
    if teacher is not None and training_args.distill_unlabelled_file:  # teacher-tagged sentences join train
        train = raw["train"]
        extra = distill.teacher_tagged_sentences(
            teacher,
            seqdata.resolve_path(training_args.distill_unlabelled_file),
            label_names,
            scheme,
            first_doc_id=max(seqdata.read_column(train, "doc_id"), default=-1) + 1,
            batch_size=training_args.per_device_eval_batch_size,
            device=training_args.device,
        )
        raw["train"] = datasets.concatenate_datasets([train, extra.cast(train.features)])

    copies_teacher = student_from_teacher and training_args.student_init == "teacher"
    tokenizer_path = teacher.name_or_path if copies_teacher else model_path
    tokenizer = seqdata.load_tokenizer(
        seqdata.resolve_path(model_args.tokenizer_name) or tokenizer_path, split_special_tokens=True, **load_kwargs
    )
    if copies_teacher:
        model = teacher
    elif seq_cls:
        model = seqcls.load_model(model_args, label_names, scheme, load_kwargs, data_args.multi_label_threshold)
    else:
        model = load_model(model_args, label_names, scheme, tokenizer, load_kwargs)
    if student_from_teacher:  # blocks of the teacher, or of model_name_or_path (student_init 'model', new head)
        model = distill.build_student_from_teacher(model, training_args.student_layers, use_crf=model_args.use_crf)
    # a head trained elsewhere answers in its own label order: the teacher's (copied), or a fine-tuned checkpoint's
    # (trained on, or whose blocks a student takes: another label set of the same size, or a label_names_file's
    # order beside a teacher)
    trained_rows = distill.label_names(teacher) if copies_teacher else checkpoint_labels
    if trained_rows is not None and list(trained_rows) != label_names and not model_args.use_crf:
        carry_over_rows(model, list(trained_rows), label_names)  # same number of rows: loaded in the old order
    virtual_tokens = adapters.virtual_tokens(model_args.peft_config)
    max_length = resolve_max_length(data_args.max_seq_length, tokenizer, model.config, virtual_tokens)

    truncated = {}  # sequence classification: texts cut by max_seq_length, per split
    if seq_cls:
        seqcls.configure_tokenizer(tokenizer, data_args.truncation_side, max_length)
        with training_args.main_process_first(desc="tokenisation"):
            tokenized = {
                name: seqcls.tokenize_split(
                    split, tokenizer, max_length, data_args.preprocessing_num_workers, f"Tokenising {name}"
                )
                for name, split in raw.items()
            }
        for name, split in tokenized.items():
            truncated[name] = seqcls.truncation_report(split, name, max_length, data_args.truncation_side)
            if name != "train":
                tokenized[name] = seqdata.sort_by_length(split)
        collator = seqcls.collator(tokenizer, max_length if data_args.pad_to_max_length else None)
    else:
        stride = seqwin.resolve_stride(tokenizer, max_length, data_args.stride, data_args.truncate_long_sentences)
        with training_args.main_process_first(desc="tokenisation"):
            tokenized = {
                name: seqdata.tokenize_split(
                    split,
                    tokenizer,
                    label2id,
                    max_length,
                    # evaluation always counts each word once, at its first subword
                    data_args.label_all_tokens and name == "train",
                    num_proc=data_args.preprocessing_num_workers,
                    desc=f"Tokenising {name}",
                    stride=stride,
                    doc_context=data_args.doc_context,
                )
                for name, split in raw.items()
            }
        for name, split in tokenized.items():
            seqdata.truncation_report(split, name)
            if name != "train":
                tokenized[name] = seqdata.sort_by_length(split)

        collator = DataCollatorForTokenClassification(
            tokenizer,
            padding="max_length" if data_args.pad_to_max_length else True,
            max_length=max_length if data_args.pad_to_max_length else None,
        )
    # Metrics over merged words (each word once, whatever the windows), per split; CRF output decoded scheme-valid.
    constraints = seqwin.decode_constraints(model.config)

    def window_metrics(name):
        if seq_cls:  # one label (or several) per text: the same scores on every split
            return seqcls.build_compute_metrics(model.config.id2label, scheme, data_args.multi_label_threshold)
        return seqwin.build_compute_metrics(
            tokenized[name],
            model.config.id2label,
            scheme,
            data_args.return_entity_level_metrics,
            constraints,
            gold=raw[name]["tags"],
        )

    staged_base = None  # the adapter's base, for a student of selected blocks: saved before wrapping, staged
    if student_from_teacher and model_args.peft_config:
        staged_base = os.path.join(training_args.output_dir, "tmp-" + adapters.STUDENT_BASE_DIR)
        adapters.save_student_base(
            model, training_args.output_dir, training_args.should_save, folder=os.path.basename(staged_base)
        )
    try:
        trainer = SeqFTTrainer(
            model=model,
            args=training_args,
            peft_config=model_args.peft_config,
            teacher_model=teacher,
            train_dataset=tokenized.get("train") if training_args.do_train else None,
            eval_dataset=tokenized.get("validation")
            if training_args.do_eval or training_args.eval_strategy != "no"
            else None,
            processing_class=tokenizer,
            data_collator=collator,
            compute_metrics=window_metrics("validation")
            if "validation" in tokenized or seq_cls
            else build_compute_metrics(model.config.id2label, scheme, data_args.return_entity_level_metrics),
        )
    except BaseException:
        if staged_base and training_args.should_save:
            shutil.rmtree(staged_base, ignore_errors=True)
        raise
    if fresh and training_args.overwrite_output_dir and training_args.should_save:
        # only now, with data, labels, model and trainer built (the trainer refuses some settings): a run that fails
        # on its inputs leaves the earlier one intact
        checkpoints.clear_previous_run(training_args.output_dir, seqdata.resolve_path(model_args.model_name_or_path))
    elif fresh and resuming_last and training_args.should_save:  # a job killed during its first save, restarted
        checkpoints.clear_interrupted_saves(training_args.output_dir)
    if staged_base and training_args.should_save:
        final = os.path.join(training_args.output_dir, adapters.STUDENT_BASE_DIR)
        shutil.rmtree(final, ignore_errors=True)  # a fresh run into a folder without an earlier run's results
        os.replace(staged_base, final)
    if training_args.should_save:
        write_resolved_recipe(model_args, data_args, training_args, record)

    results = {}
    if training_args.do_train:
        if "train" not in tokenized:
            raise SeqFTError("do_train is set but no training split was loaded.")
        train_result = trainer.train(resume_from_checkpoint=resume)
        stopped = checkpoints.stopped_by_signal(trainer)
        if stopped is not None:  # preempted: the checkpoint is the output; final model and results would lie
            raise Interrupted(
                f"SIGTERM: training stopped at step {stopped} of {trainer.state.max_steps} and saved "
                f"{os.path.join(training_args.output_dir, f'checkpoint-{stopped}')}. Run the same command with "
                "'resume_from_checkpoint': 'last' to go on; no final model or results were written."
            )
        trainer.save_model()
        if model_args.merge_adapter:
            adapters.merge_after_training(trainer, os.path.join(training_args.output_dir, "merged"), tokenizer)
        # sentences (or texts), as run_ner.py counts them; windows when long sentences were cut into several
        metrics = dict(train_result.metrics, train_samples=len(raw["train"]))
        if not seq_cls:
            metrics["train_windows"] = len(tokenized["train"])
        if model_args.peft_config:
            counts = adapters.trainable_parameters(trainer.model)
            metrics.update({f"peft_{key}_parameters": value for key, value in counts.items()})
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results["train"] = metrics

    if training_args.do_eval and "validation" in tokenized:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(raw["validation"])
        if seq_cls:  # as test_texts_truncated
            metrics["eval_texts_truncated"] = truncated["validation"]
        else:
            metrics["eval_windows"] = len(tokenized["validation"])
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results["eval"] = metrics

    if training_args.do_predict and "test" in tokenized:
        test = tokenized["test"]
        eval_metrics, trainer.compute_metrics = trainer.compute_metrics, window_metrics("test")
        try:
            output = trainer.predict(test, metric_key_prefix="test")
        finally:
            trainer.compute_metrics = eval_metrics
        if seq_cls:  # test_predictions.jsonl, per-class report, confusion matrix PNG
            metrics = dict(output.metrics, test_samples=len(raw["test"]), test_texts_truncated=truncated["test"])
            if trainer.is_world_process_zero():
                seqcls.write_test_outputs(
                    training_args.output_dir,
                    raw["test"],
                    test,
                    output.predictions,
                    model.config.id2label,
                    scheme,
                    data_args.multi_label_threshold,
                )
        else:
            predicted, missing = word_predictions(test, output.predictions, model.config.id2label, scheme, constraints)
            metrics = dict(output.metrics, test_samples=len(raw["test"]), test_windows=len(test))
            metrics["test_words_truncated"] = missing
            if missing:
                written = "with tag O" if missing_tag(scheme) else "with '_' (no prediction; scored as wrong)"
                logger.warning(f"test: {missing} words were cut by max_seq_length and written {written}.")
            if trainer.is_world_process_zero():
                path = os.path.join(training_args.output_dir, "test_predictions.txt")
                write_predictions(path, raw["test"], predicted)
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)
        results["test"] = metrics

    # The card (and its plots) last, once the eval/test results exist; push_to_hub saves, writes the card, uploads.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
    elif trainer.is_world_process_zero() and training_args.do_train:
        trainer.create_model_card()  # it describes a model trained here: an evaluation writes none

    if trainer.is_world_process_zero():
        for split, metrics in results.items():
            if split != "train":
                print_table(f"{split} metrics", metrics)
    return results


def main(argv=None) -> int:
    try:
        return run_cli(run, argv)
    finally:
        close_process_group()


def close_process_group() -> None:
    """Tear down the process group a multi-process run started (torchrun, accelerate launch), as torch asks: a rank
    that exits with it still open may abort in gloo's threads at interpreter shutdown ("terminate called without
    an active exception", seen on 2 CPU ranks under load)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
