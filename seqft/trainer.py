"""SeqFTTrainer: the stock `Trainer`, wired to seqft's features. With every feature off it trains like `Trainer`.

One home and one hook per feature:

| feature      | home                | hook                                                                  |
|--------------|---------------------|-----------------------------------------------------------------------|
| CRF          | seqft/modeling/     | the model itself (its loss, its Viterbi logits); nothing here         |
| LLRD         | seqft/optim.py      | `create_optimizer` (falls through to `super()` when off); `StepRates` |
|              |                     | observes each group's rate for the `lr/<group>` logs                  |
| PEFT         | seqft/adapters.py   | construction: `peft_config=` (wrap; EVA's data pass)                  |
| distillation | seqft/distill.py    | construction: `teacher_model=`; `compute_loss` adds the soft loss     |
| model card   | seqft/model_card.py | `create_model_card`                                                   |
| class weights| seqft/seqcls.py     | construction: `class_weights` -> a weight tensor in the loss closure  |
| checkpoints  | seqft/checkpoints.py| `_save_checkpoint`: into tmp-checkpoint-N/, renamed when complete     |

On several ranks, what features log is averaged over ranks, and so is the loss that `train()` adds to train_loss at
the end (the stock Trainer takes rank 0's share of it); evaluation keeps the input order.

Documented override points for subclasses: `compute_loss` (call `super()`), `compute_distillation_loss`,
`get_layer_id`, `get_num_layers`, `create_model_card`. Everything else is private.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainingArguments

from . import checkpoints, optim
from .configs import SeqFTConfig
from .errors import RecipeError
from .seqcls import class_weight_tensor, multi_label_loss

logger = logging.getLogger("seqft")


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def declares_own_loss_scaling(model) -> bool:
    """True when the model class explicitly says it divides its loss by `num_items_in_batch` itself.

    transformers 5.x assumes any `forward(**kwargs)` does so; stock token-classification heads do not, and their
    loss comes out doubled under gradient accumulation 2 or on 2 ranks (transformers #47688). seqft trusts only
    an explicit `accepts_loss_kwargs = True` (seqft's CRF model sets it) and computes the loss itself otherwise.
    """
    return getattr(type(_base_model(model)), "accepts_loss_kwargs", False) is True


def as_seqft_config(args) -> SeqFTConfig:
    """`args` as a `SeqFTConfig`: the stock `TrainingArguments` (every seqft feature off) is copied field by field,
    and None gives the stock default (`output_dir="trainer_output"`)."""
    if isinstance(args, SeqFTConfig):
        return args
    if args is None:
        return SeqFTConfig(output_dir="trainer_output")
    if not isinstance(args, TrainingArguments):
        raise TypeError(f"args must be a SeqFTConfig or TrainingArguments, got {type(args).__name__}.")
    known = {f.name for f in dataclasses.fields(SeqFTConfig)}
    extra = [f.name for f in dataclasses.fields(args) if f.init and f.name not in known]
    if extra:  # they would be lost in the copy
        raise TypeError(
            f"args is a {type(args).__name__}, whose fields {', '.join(extra)} a SeqFTConfig does not have. Derive "
            f"{type(args).__name__} from seqft.SeqFTConfig instead of TrainingArguments, so that they are kept."
        )
    return SeqFTConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init})


class SeqFTTrainer(Trainer):
    """`Trainer` plus seqft's features. Extra constructor arguments:

    - `peft_config`: a `peft.PeftConfig` or a dict with `peft_type` and that method's options; the model is wrapped
      with the adapter and its task head / CRF are trained and saved with it.
    - `teacher_model`: a fine-tuned model (or path) to distil from; see `compute_distillation_loss`.

    Everything else is the stock `Trainer`'s, in its order (`SeqFTTrainer(model, args, data_collator, ...)`);
    `args` may be a stock `TrainingArguments` (copied into a `SeqFTConfig`, every seqft feature off). `model_init`
    works too: each model it returns is wrapped with `peft_config`.

    The training loss: the model's own when its class sets `accepts_loss_kwargs = True` (seqft's CRF), else
    `token_loss` over `labels` (cross-entropy; for a sequence classifier as its config's `problem_type` says),
    divided by the step's labelled count so that it does not depend on gradient accumulation or the number of ranks.
    """

    _tag_names = ["seqft"]

    def __init__(self, *args, peft_config=None, teacher_model=None, **kwargs):
        params = inspect.signature(Trainer.__init__).bind(self, *args, **kwargs).arguments  # the stock signature
        params.pop("self")
        params["args"] = as_seqft_config(params.get("args"))
        self._peft_config = peft_config  # call_model_init wraps what model_init returns
        if peft_config is not None and params.get("model") is not None:
            from .adapters import wrap_model

            params["model"] = wrap_model(params["model"], peft_config)
        super().__init__(**params)
        if self.model is not None:
            optim.match_zero3_dtype(self.model, self.args)  # ZeRO-3 takes one dtype: the CRF and adapters were fp32
        checkpoints.BoundaryJITCheckpoint.install(self)  # SIGTERM saves between steps only (enable_jit_checkpoint)
        self._install_loss(params.get("compute_loss_func"))
        self._check_optimizer_arguments(params.get("optimizers"), params.get("optimizer_cls_and_kwargs"))
        if self.is_deepspeed_enabled and self.args.has_group_rates:
            # an accelerate config's DeepSpeed file too: its "optimizer" block would bypass create_optimizer
            optim.check_deepspeed_optimizer(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        self._step_rates = optim.StepRates() if self.args.has_group_rates else None  # logged as lr/<group>
        if self._step_rates is not None:
            self.add_callback(self._step_rates)
        if peft_config is not None:
            from .adapters import initialize_from_data

            initialize_from_data(self)  # EVA's pass over the training set; nothing for other initialisations
        self._metrics = defaultdict(dict)  # name -> {optimiser step: sum of that step's micro-batch values}
        self._metric_totals = defaultdict(lambda: [0.0, 0])  # name -> [sum, steps] of this train() call, for its end
        self.teacher_model = None
        if teacher_model is None and self.train_dataset is not None:  # a teacher only matters to training
            teacher_model = self.args.teacher_model_name_or_path  # prepare_teacher loads a path
            if teacher_model is None and (self.args.student_layers is not None or self.args.distill_unlabelled_file):
                what = "student_layers" if self.args.student_layers is not None else "distill_unlabelled_file"
                raise RecipeError(
                    f"{what} is set, but there is no teacher: pass teacher_model= or set teacher_model_name_or_path."
                )
        if teacher_model is not None:
            from .distill import prepare_teacher

            self.teacher_model = prepare_teacher(teacher_model, self)
        self._ready = True

    _ready = False  # __init__ is done: a model from model_init now gets the set-up the first model got there

    def call_model_init(self, trial=None):
        model = super().call_model_init(trial)
        if self._peft_config is not None:
            from .adapters import wrap_model

            model = wrap_model(model, self._peft_config)
        optim.match_zero3_dtype(model, self.args)
        if self._ready:  # train() replaces the model __init__ set up (EVA's pass, the distillation projection)
            if self._peft_config is not None:
                from .adapters import initialize_from_data

                initialize_from_data(self, model)
            if self.teacher_model is not None:
                from .distill import prepare_student

                prepare_student(model, self)
        return model

    def _check_optimizer_arguments(self, optimizers, optimizer_cls_and_kwargs) -> None:
        """The group rates (layer_decay, head_learning_rate, loraplus_lr_ratio) live in the optimiser seqft builds:
        a caller's own optimiser, or a learning rate in optimizer_cls_and_kwargs, would silently override them."""
        if not self.args.has_group_rates:
            return
        rates = "layer_decay / head_learning_rate / loraplus_lr_ratio"
        if optimizers is not None and optimizers[0] is not None:
            raise RecipeError(
                f"{rates} set rates per parameter group in the optimiser SeqFTTrainer builds, and optimizers= "
                "passes a ready one, which would ignore them. Pass optimizer_cls_and_kwargs=(cls, kwargs) instead "
                "(its class gets seqft's groups), or build the groups with seqft.optim.llrd_param_groups yourself "
                "and turn those settings off."
            )
        kwargs = optimizer_cls_and_kwargs[1] if optimizer_cls_and_kwargs else {}
        if "lr" in kwargs:
            raise RecipeError(
                f"optimizer_cls_and_kwargs sets lr = {kwargs['lr']}, but with {rates} every parameter group has its "
                "own rate, derived from args.learning_rate: set learning_rate in the arguments and drop 'lr'."
            )

    def _install_loss(self, user_loss) -> None:
        """`token_loss` as the Trainer's `compute_loss_func`, unless the model computes its own loss or the caller
        passed a loss function; settings that would then be silently ignored are refused."""
        args, model = self.args, self.model
        own = declares_own_loss_scaling(model)
        whose = f"{type(_base_model(model)).__name__} computes its own loss" if own else "compute_loss_func is given"
        if own and args.label_smoothing_factor > 0:
            raise RecipeError(
                f"label_smoothing_factor = {args.label_smoothing_factor}: {whose}, and the Trainer would replace it "
                "with smoothed cross-entropy on the logits (a CRF would be left untrained). Set "
                "label_smoothing_factor to 0 (or use_crf to false)."
            )
        if getattr(args, "class_weights", None) and (own or user_loss is not None):
            raise RecipeError(
                f"class_weights weight seqft's cross-entropy, but {whose}: they would be ignored. Remove "
                "class_weights, or weight the classes in that loss."
            )
        if own or user_loss is not None:
            return
        if not type(_base_model(model)).__module__.startswith(("transformers.", "seqft.")):
            logger.warning(
                f"seqft trains {type(_base_model(model)).__name__} with its own loss (SeqFTTrainer.token_loss on the "
                "model's logits and `labels`), not with a loss the model computes. To keep the model's loss, set "
                "`accepts_loss_kwargs = True` on its class (its loss must then be divided by num_items_in_batch), or "
                "pass compute_loss_func."
            )
        smoothing = args.label_smoothing_factor
        # class_weights (seqft/seqcls.py): per-class weights of the training loss; evaluation loss stays unweighted,
        # so a trainer without training data (an evaluate-only run of a recipe that sets them) needs none
        spec = getattr(args, "class_weights", None)
        weight = class_weight_tensor(spec, self.train_dataset, model) if self.train_dataset is not None else None

        def compute_loss_func(outputs, labels, num_items_in_batch=None):
            if labels is None:
                raise RecipeError(
                    f"SeqFTTrainer computes its loss from `labels`, and this batch has none. A model trained on other "
                    f"targets must compute its own loss: set `accepts_loss_kwargs = True` on "
                    f"{type(_base_model(self.model)).__name__}, or pass compute_loss_func."
                )
            weighted = weight if weight is not None and self.model.training else None
            problem_type = getattr(getattr(_base_model(self.model), "config", None), "problem_type", None)
            return self.token_loss(
                outputs,
                labels,
                num_items_in_batch,
                label_smoothing=smoothing,
                weight=weighted,
                problem_type=problem_type,
            )

        self.compute_loss_func = compute_loss_func

    # ----------------------------------------------------------------------------------------------------------
    # Loss

    @staticmethod
    def token_loss(
        outputs,
        labels,
        num_items_in_batch=None,
        label_smoothing: float = 0.0,
        weight: torch.Tensor | None = None,
        problem_type: str | None = None,
    ) -> torch.Tensor:
        """Cross-entropy summed over labelled positions and divided by the labelled count of the whole step.

        `num_items_in_batch` counts labels != -100 over all accumulated micro-batches (and all ranks), so the loss
        and gradients do not depend on how a batch is split. Works for token (B,T,C) and sequence (B,C) logits.
        `weight`: per-class weights (`class_weights`); the weighted sum is still divided by the labelled count.
        Multi-hot labels of the logits' shape (multi-label sequence classification) get binary cross-entropy per
        (text, label) entry, `weight` as per-label `pos_weight` (`seqft.seqcls.multi_label_loss`). Float targets of
        a one-output head (regression) get squared error. A step with no labelled position has loss 0.

        For sequence logits (B,C), `problem_type` (the model config's) decides as in transformers' classifiers:
        `regression` is squared error per target value, `multi_label_classification` binary cross-entropy,
        `single_label_classification` cross-entropy; when it is None, one output means regression, labels of the
        logits' shape binary cross-entropy, and class ids cross-entropy. Token logits (B,T,C) always get
        cross-entropy, as transformers' token classifiers do.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        sequence = logits.dim() == 2
        if sequence and problem_type is None:
            problem_type = "regression" if logits.shape[-1] == 1 else None
        if sequence and problem_type == "regression":  # squared error per target value, divided by the step's count
            target = labels.reshape(-1).to(logits.device).float()
            loss = F.mse_loss(logits.reshape(-1).float(), target, reduction="sum")
            count = target.numel() if num_items_in_batch is None else num_items_in_batch
            return loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        multi = problem_type == "multi_label_classification" or (problem_type is None and labels.shape == logits.shape)
        if sequence and multi:
            return multi_label_loss(logits, labels, num_items_in_batch, weight, label_smoothing)
        # shape: (N, num_labels), N = every position
        flat = logits.reshape(-1, logits.shape[-1]).float()
        target = labels.reshape(-1).to(flat.device)
        weight = weight.to(flat.device) if weight is not None else None
        loss = F.cross_entropy(
            flat, target, weight=weight, ignore_index=-100, reduction="sum", label_smoothing=label_smoothing
        )
        if num_items_in_batch is None:
            num_items_in_batch = target.ne(-100).sum()
        count = torch.as_tensor(num_items_in_batch, device=loss.device).clamp(min=1)  # no label: 0, not NaN
        return loss / count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The hard loss (the model's or `token_loss`), plus the distillation loss while training with a teacher.

        Evaluation loss stays the hard loss, so it is comparable across recipes.
        """
        self._seqft_loss_ran = True  # read by loss_is_scaled_for_ga
        inputs = dict(inputs)  # the stock compute_loss pops `labels` from what it is given; keep the caller's batch
        if self.teacher_model is None or not model.training:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        from .distill import student_inputs

        hard, outputs = super().compute_loss(
            model, student_inputs(self, inputs), return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        parts = self.compute_distillation_loss(model, inputs, outputs, num_items_in_batch)
        alpha = self.args.distill_alpha
        loss = (1.0 - alpha) * hard + parts.pop("loss")
        for key, value in {"loss_hard": hard, **parts}.items():
            # each micro-batch's part is its share of the step's (divided by the step's count): summed per step,
            # as the Trainer sums `loss`, so that the logged parts add up to `loss` under gradient accumulation
            steps = self._metrics[key]
            step = self.state.global_step
            steps[step] = steps.get(step, 0.0) + (value.detach().item() if torch.is_tensor(value) else float(value))
        return (loss, outputs) if return_outputs else loss

    _seqft_loss_ran = False
    _loss_scaled_for_ga: bool | None = None

    @property
    def loss_is_scaled_for_ga(self) -> bool | None:
        """Whether the step's loss is already divided for gradient accumulation (the stock `training_step` reads
        it after `compute_loss`). seqft's loss is (None: the stock rule, which says so for its `compute_loss_func`).
        A `compute_loss` override that never calls `super()` returns a loss of its own: then the stock rule for a
        Trainer without `compute_loss_func` applies, as the stock Trainer would treat that override (it used to be
        taken as scaled, and a per-batch mean came out multiplied by the accumulation steps). Assign a bool to
        decide yourself."""
        if self._loss_scaled_for_ga is not None:
            return self._loss_scaled_for_ga
        ran, self._seqft_loss_ran = self._seqft_loss_ran, False
        return None if ran else bool(self.model_accepts_loss_kwargs)

    @loss_is_scaled_for_ga.setter
    def loss_is_scaled_for_ga(self, value: bool | None) -> None:
        self._loss_scaled_for_ga = value

    def compute_distillation_loss(self, model, inputs, student_outputs, num_items_in_batch=None) -> dict:
        """Override point. Returns {"loss": weighted soft (+ hidden) loss, plus named parts for logging}."""
        from .distill import distillation_loss

        return distillation_loss(self, model, inputs, student_outputs, num_items_in_batch)

    def _finalize_training(self, trial, num_train_samples, start_time):
        # The stock code adds the loss summed since the last logging step to train_loss as each rank's own share, so
        # rank 0's ends up in train_results.json; average it over ranks first, as the logged losses are.
        if self.args.world_size > 1 and torch.is_tensor(getattr(self, "_tr_loss", None)):
            self._tr_loss = self.accelerator.reduce(self._tr_loss.detach().clone(), reduction="mean")
        return super()._finalize_training(trial, num_train_samples, start_time)

    # ----------------------------------------------------------------------------------------------------------
    # Optimiser (LLRD)

    def get_layer_id(self, name: str, num_layers: int) -> int:
        """Override point: depth of a parameter (0 = embeddings, k+1 = block k, num_layers+1 = head/CRF)."""
        return optim.get_layer_id(name, num_layers)

    def get_num_layers(self, model) -> int:
        """Override point: the number of transformer blocks LLRD spreads its rates over (read from the config)."""
        try:
            return optim.num_layers_of(model)
        except ValueError as err:
            raise ValueError(f"{err} With SeqFTTrainer: override get_num_layers(model) (and get_layer_id).") from None

    def create_optimizer(self, model=None):
        if not self.args.has_group_rates:
            return super().create_optimizer(model)
        args = self.args
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = optim.llrd_param_groups(
                opt_model,
                learning_rate=args.learning_rate,
                layer_decay=args.layer_decay if args.layer_decay is not None else 1.0,
                weight_decay=args.weight_decay,
                head_learning_rate=args.head_learning_rate,
                get_layer_id=self.get_layer_id,
                num_layers=self.get_num_layers(opt_model),
                lora_b_ratio=args.loraplus_lr_ratio,
            )
            if self.optimizer_cls_and_kwargs is not None:  # the constructor's optimizer_cls_and_kwargs, as stock
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, opt_model)
            taken = sorted({"params", "model", "optimizer_dict"} & set(optimizer_kwargs))
            if taken:  # GaLore, LOMO, layer-wise optimisers build their own parameter groups
                raise RecipeError(
                    f"optim = {args.optim!r} builds its own parameter groups ({', '.join(taken)}), and "
                    "layer_decay / head_learning_rate / loraplus_lr_ratio need seqft's: use another optimiser "
                    "(adamw_torch, sgd, ...) or turn those off."
                )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    # ----------------------------------------------------------------------------------------------------------
    # Evaluation order, logging, model card

    def _get_train_sampler(self, train_dataset=None):
        # group_by_length: the stock length groups, served in random order (see ShuffledLengthGroupedSampler).
        # The dataloader's copy has lost the `length` column (unused by the model); self.train_dataset, same rows in
        # the same order, still has it.
        column = self.args.length_column_name
        candidates = [d for d in (train_dataset, self.train_dataset) if d is not None]
        dataset = next((d for d in candidates if column in getattr(d, "column_names", ())), None)
        same_rows = dataset is not None and len(dataset) == len(candidates[0])
        if self.args.train_sampling_strategy != "group_by_length" or not same_rows:
            return super()._get_train_sampler(train_dataset)
        from .data import ShuffledLengthGroupedSampler

        return ShuffledLengthGroupedSampler(
            dataset[column], self.args.train_batch_size * self.args.gradient_accumulation_steps
        )

    def _get_eval_sampler(self, eval_dataset):
        # The stock Trainer permutes evaluation and prediction order under group_by_length (on any number of ranks),
        # which misaligns a predictions file with its input. seqft sorts eval/test sets by length up front instead
        # (seqft.data). On several ranks: None, so accelerate shards the set in order and gather_for_metrics drops
        # the padding it adds to the last batch.
        if eval_dataset is None or self.args.world_size > 1:
            return None
        return SequentialSampler(eval_dataset)

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False, **kwargs):
        # dataloader_drop_last is for training batches: the stock evaluation and prediction loaders drop the last
        # batch too, so sentences went unscored (a wrong accuracy, or windows missing their words).
        if is_training or not self.args.dataloader_drop_last:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, **kwargs)
        self.args.dataloader_drop_last = False
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, **kwargs)
        finally:
            self.args.dataloader_drop_last = True

    # ----------------------------------------------------------------------------------------------------------
    # Crash-safe checkpoints (seqft/checkpoints.py)

    _checkpoint_staging: str | None = None  # set while a checkpoint is being written into its staging directory

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None):
        """The stock `train`, after checking the checkpoint to resume from (`checkpoints.checked_resume`): a path
        must hold all a resume needs, and True takes the last complete checkpoint (the stock code takes the last
        one, complete or not)."""
        resume_from_checkpoint = checkpoints.checked_resume(resume_from_checkpoint, self.args.output_dir)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)

    def _save_checkpoint(self, model, trial):
        # The stock save, into tmp-checkpoint-N/, renamed to checkpoint-N once every rank has written its part.
        run_dir = self._get_output_dir(trial)

        def save():
            super(SeqFTTrainer, self)._save_checkpoint(model, trial)
            if self.teacher_model is not None and self.args.should_save and not self._saves_whole_state:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                from .distill import save_projection  # the weights file leaves it out (final models must not have it)

                folder = os.path.join(self._checkpoint_staging, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
                save_projection(self.accelerator.unwrap_model(self.model), folder)

        checkpoints.save_atomically(self, save, run_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.teacher_model is not None and not self._saves_whole_state:
            from .distill import load_projection

            load_projection(
                self.accelerator.unwrap_model(model if model is not None else self.model), resume_from_checkpoint
            )

    @property
    def _saves_whole_state(self) -> bool:
        """DeepSpeed and FSDP checkpoints hold every parameter in their own states, the projection's too."""
        return self.is_deepspeed_enabled or self.is_fsdp_enabled

    def _get_output_dir(self, trial):
        return self._checkpoint_staging or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder):
        if self._checkpoint_staging is None:  # while staging, save_atomically pushes the renamed checkpoint instead
            if self.args.should_save and self.args.hub_strategy != "end":
                checkpoints.copy_for_push(checkpoint_folder, self.args.output_dir)
            super()._push_from_checkpoint(checkpoint_folder)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Into training logs: what features collected since the last one (per step, mean over steps) and the
        per-group LRs; into the summary `train()` logs at its end (and returns, so it reaches train_results.json):
        the means over all its steps, `train_` + name, as `train_loss` is. Evaluation logs are left as they are."""
        final = "train_loss" in logs
        if "loss" not in logs and not final:
            return super().log(logs, start_time)
        for key, steps in self._metrics.items():
            total = self._metric_totals[key]
            total[0], total[1] = total[0] + sum(steps.values()), total[1] + len(steps)
        if final:  # the steps after the last logging step count too
            means = {f"train_{key}": s / n for key, (s, n) in sorted(self._metric_totals.items()) if n}
            self._metric_totals.clear()
        else:
            means = {key: sum(steps.values()) / len(steps) for key, steps in sorted(self._metrics.items()) if steps}
        self._metrics.clear()
        if means and self.args.world_size > 1:  # each rank holds its own share; every rank logs at the same steps
            local = torch.tensor(list(means.values()), dtype=torch.float64, device=self.args.device)
            means = dict(zip(means, self.accelerator.reduce(local, reduction="mean").tolist()))
        logs.update(means)
        if self._step_rates is not None and self._step_rates.rates and not final:
            logs.update(self._step_rates.rates)  # each group's rate in the step just taken, as `learning_rate`
        super().log(logs, start_time)

    def create_model_card(self, *args, **kwargs):
        """Override point: writes README.md (metadata, results, recipe, usage) into output_dir."""
        from .model_card import write_model_card

        return write_model_card(self, *args, **kwargs)
