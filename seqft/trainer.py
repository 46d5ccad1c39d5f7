"""SeqFTTrainer: the stock `Trainer`, wired to seqft's features. With every feature off it trains like `Trainer`.

One hook per feature: LLRD in `create_optimizer` (seqft/optim.py), PEFT at construction (seqft/adapters.py),
distillation at construction + `compute_loss` (seqft/distill.py); the CRF is the model (seqft/modeling/).

Override points for subclasses: `compute_loss` (call `super()`), `compute_distillation_loss`, `get_layer_id`,
`create_model_card`.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer


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
    _tag_names = ["seqft"]

    def __init__(self, model=None, args=None, *, compute_loss_func=None, **kwargs):
        if compute_loss_func is None and model is not None and not declares_own_loss_scaling(model):
            smoothing = args.label_smoothing_factor if args is not None else 0.0
            compute_loss_func = lambda outputs, labels, num_items_in_batch=None: self.token_loss(  # noqa: E731
                outputs, labels, num_items_in_batch, label_smoothing=smoothing
            )
        super().__init__(model=model, args=args, compute_loss_func=compute_loss_func, **kwargs)
        self._metrics = defaultdict(list)

    @staticmethod
    def token_loss(outputs, labels, num_items_in_batch=None, label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy summed over labelled positions and divided by the labelled count of the whole step.

        `num_items_in_batch` counts labels != -100 over all accumulated micro-batches (and all ranks), so the loss
        and gradients do not depend on how a batch is split. Works for token (B,T,C) and sequence (B,C) logits.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        # shape: (N, num_labels), N = every position
        flat = logits.reshape(-1, logits.shape[-1]).float()
        target = labels.reshape(-1).to(flat.device)
        loss = F.cross_entropy(flat, target, ignore_index=-100, reduction="sum", label_smoothing=label_smoothing)
        if num_items_in_batch is None:
            num_items_in_batch = target.ne(-100).sum().clamp(min=1)
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        return loss / num_items_in_batch

    def _get_eval_sampler(self, eval_dataset):
        # The stock Trainer permutes evaluation and prediction order under group_by_length, which misaligns a
        # predictions file with its input. seqft sorts eval/test sets by length up front instead (seqft.data).
        if eval_dataset is None or self.args.world_size > 1:
            return super()._get_eval_sampler(eval_dataset) if self.args.world_size > 1 else None
        return SequentialSampler(eval_dataset)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge the metrics features collected since the last log (mean over steps), then log as usual."""
        prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
        for key, values in self._metrics.items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._metrics.clear()
        super().log(logs, start_time)
