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
`get_layer_id`, `create_model_card`. Everything else is private.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer

from . import checkpoints, optim
from .seqcls import class_weight_tensor, multi_label_loss


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def declares_own_loss_scaling(model) -> bool:
    """True when the model class explicitly says it divides its loss by `num_items_in_batch` itself.

    transformers 5.x assumes any `forward(**kwargs)` does so; stock token-classification heads do not, and their
    loss comes out doubled under gradient accumulation 2 or on 2 ranks (transformers #47688). seqft trusts only
    an explicit `accepts_loss_kwargs = True` (seqft's CRF model sets it) and computes the loss itself otherwise.
    """
    return getattr(type(_base_model(model)), "accepts_loss_kwargs", False) is True


class SeqFTTrainer(Trainer):
    """`Trainer` plus seqft's features. Extra constructor arguments:

    - `peft_config`: a `peft.PeftConfig` or a dict with `peft_type` and that method's options; the model is wrapped
      with the adapter and its task head / CRF are trained and saved with it.
    - `teacher_model`: a fine-tuned model (or path) to distil from; see `compute_distillation_loss`.
    """

    _tag_names = ["seqft"]

    def __init__(
        self, model=None, args=None, *, peft_config=None, teacher_model=None, compute_loss_func=None, **kwargs
    ):
        if peft_config is not None:
            from .adapters import wrap_model

            model = wrap_model(model, peft_config)
        if compute_loss_func is None and model is not None and not declares_own_loss_scaling(model):
            smoothing = args.label_smoothing_factor if args is not None else 0.0
            # class_weights (seqft/seqcls.py): per-class weights of the training loss; evaluation loss stays unweighted
            weight = class_weight_tensor(getattr(args, "class_weights", None), kwargs.get("train_dataset"), model)

            def compute_loss_func(outputs, labels, num_items_in_batch=None):
                weighted = weight if weight is not None and self.model.training else None
                return self.token_loss(outputs, labels, num_items_in_batch, label_smoothing=smoothing, weight=weighted)

        super().__init__(model=model, args=args, compute_loss_func=compute_loss_func, **kwargs)
        if self.is_deepspeed_enabled and self.args.has_group_rates:
            # an accelerate config's DeepSpeed file too: its "optimizer" block would bypass create_optimizer
            optim.check_deepspeed_optimizer(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        self._step_rates = optim.StepRates() if self.args.has_group_rates else None  # logged as lr/<group>
        if self._step_rates is not None:
            self.add_callback(self._step_rates)
        if peft_config is not None:
            from .adapters import initialize_from_data

            initialize_from_data(self)  # EVA's pass over the training set; nothing for other initialisations
        self._metrics = defaultdict(list)
        self.teacher_model = None
        if teacher_model is not None:
            from .distill import prepare_teacher

            self.teacher_model = prepare_teacher(teacher_model, self)

    # ----------------------------------------------------------------------------------------------------------
    # Loss

    @staticmethod
    def token_loss(
        outputs, labels, num_items_in_batch=None, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cross-entropy summed over labelled positions and divided by the labelled count of the whole step.

        `num_items_in_batch` counts labels != -100 over all accumulated micro-batches (and all ranks), so the loss
        and gradients do not depend on how a batch is split. Works for token (B,T,C) and sequence (B,C) logits.
        `weight`: per-class weights (`class_weights`); the weighted sum is still divided by the labelled count.
        Multi-hot labels of the logits' shape (multi-label sequence classification) get binary cross-entropy per
        (text, label) entry, `weight` as per-label `pos_weight` (`seqft.seqcls.multi_label_loss`).
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if labels.shape == logits.shape:
            return multi_label_loss(logits, labels, num_items_in_batch, weight, label_smoothing)
        # shape: (N, num_labels), N = every position
        flat = logits.reshape(-1, logits.shape[-1]).float()
        target = labels.reshape(-1).to(flat.device)
        weight = weight.to(flat.device) if weight is not None else None
        loss = F.cross_entropy(
            flat, target, weight=weight, ignore_index=-100, reduction="sum", label_smoothing=label_smoothing
        )
        if num_items_in_batch is None:
            num_items_in_batch = target.ne(-100).sum().clamp(min=1)
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        return loss / num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The hard loss (the model's or `token_loss`), plus the distillation loss while training with a teacher.

        Evaluation loss stays the hard loss, so it is comparable across recipes.
        """
        if self.teacher_model is None or not model.training:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        from .distill import student_inputs

        inputs = dict(inputs)  # the stock compute_loss pops `labels`; distillation needs them too
        hard, outputs = super().compute_loss(
            model, student_inputs(self, inputs), return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        parts = self.compute_distillation_loss(model, inputs, outputs, num_items_in_batch)
        alpha = self.args.distill_alpha
        loss = (1.0 - alpha) * hard + parts.pop("loss")
        self._metrics["loss_hard"].append(hard.detach().item())
        for key, value in parts.items():
            self._metrics[key].append(value.detach().item() if torch.is_tensor(value) else float(value))
        return (loss, outputs) if return_outputs else loss

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
                lora_b_ratio=args.loraplus_lr_ratio,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, opt_model)
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

    # ----------------------------------------------------------------------------------------------------------
    # Crash-safe checkpoints (seqft/checkpoints.py)

    _checkpoint_staging: str | None = None  # set while a checkpoint is being written into its staging directory

    def _save_checkpoint(self, model, trial):
        # The stock save, into tmp-checkpoint-N/, renamed to checkpoint-N once every rank has written its part.
        run_dir = self._get_output_dir(trial)
        checkpoints.save_atomically(self, lambda: super(SeqFTTrainer, self)._save_checkpoint(model, trial), run_dir)

    def _get_output_dir(self, trial):
        return self._checkpoint_staging or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder):
        if self._checkpoint_staging is None:  # while staging, save_atomically pushes the renamed checkpoint instead
            super()._push_from_checkpoint(checkpoint_folder)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge what features collected since the last log (mean over steps) and the per-group LRs."""
        prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
        means = {prefix + key: sum(values) / len(values) for key, values in sorted(self._metrics.items()) if values}
        self._metrics.clear()
        if means and self.args.world_size > 1:  # each rank holds its own share; every rank logs at the same steps
            local = torch.tensor(list(means.values()), dtype=torch.float64, device=self.args.device)
            means = dict(zip(means, self.accelerator.reduce(local, reduction="mean").tolist()))
        logs.update(means)
        if "loss" in logs and self._step_rates is not None and self._step_rates.rates:
            logs.update(self._step_rates.rates)  # each group's rate in the step just taken, as `learning_rate`
        super().log(logs, start_time)

    def create_model_card(self, *args, **kwargs):
        """Override point: writes README.md (metadata, results, recipe, usage) into output_dir."""
        from .model_card import write_model_card

        return write_model_card(self, *args, **kwargs)
