"""A linear-chain conditional random field: negative log-likelihood, Viterbi decoding and posterior marginals.

Pure torch, no Hugging Face imports: this file is copied next to `modeling_crf.py` into self-contained checkpoints.

Conventions
-----------
* `emissions` is `(batch, seq_len, num_tags)`, `tags` is `(batch, seq_len)` long, `mask` is `(batch, seq_len)` bool.
* The mask may have holes and may start with off positions (a `[CLS]` token, a left pad): the CRF runs over the
  on-positions of each row in order, as if the off-positions were not there. Internally the on-positions are packed
  to the left with a stable sort, the algorithms run on the packed tensors and the results are scattered back.
* A negative tag at an on-position is *unobserved*: the likelihood marginalises over every tag there (partial labels,
  e.g. `-100` on the non-first subwords of a word).
* Transition constraints (`allowed`, `allowed_start`, `allowed_end`) are applied inside every computation by giving a
  disallowed transition the finite score `DISALLOWED_SCORE`, so decoded paths never violate them while gradients stay
  finite.
"""

from __future__ import annotations

import torch
from torch import nn

DISALLOWED_SCORE = -1e4
"""Score added for a disallowed transition; finite, so gradients stay finite, yet it dominates any realistic path."""

SCHEMES = ("IOB2", "IOB1", "BIOES", "plain")
REDUCTIONS = ("none", "sum", "mean", "token_mean")

_SCHEME_PREFIXES = {"IOB2": "BI", "IOB1": "BI", "BIOES": "BIES"}

# Viterbi's max and argmax over the previous tag (see `CRF._viterbi`). `F.max_pool2d(..., return_indices=True)` calls
# this binding after Python-level argument handling that costs 0.9 us of its 3 us at Viterbi's sizes, once per
# position; the public function is the fallback.
_max_pool_with_indices = getattr(torch._C._nn, "max_pool2d_with_indices", None) or (
    lambda x, kernel: nn.functional.max_pool2d(x, kernel, return_indices=True)
)


def _canonical_scheme(scheme: str) -> str:
    for name in SCHEMES:
        if isinstance(scheme, str) and scheme.lower() == name.lower():
            return name
    raise ValueError(f"unknown label scheme {scheme!r}; expected one of {list(SCHEMES)}")


def _parse_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", None)`; ValueError naming the tag if it does not fit `scheme`."""
    if tag == "O":
        return "O", None
    prefixes = _SCHEME_PREFIXES[scheme]
    prefix, sep, entity_type = tag.partition("-")
    if sep and len(prefix) == 1 and prefix in prefixes and entity_type:
        return prefix, entity_type
    expected = " or ".join(f"{p}-<type>" for p in prefixes)
    raise ValueError(f"label {tag!r} is not a valid {scheme} tag: expected 'O' or {expected}")


def allowed_transitions(labels: list[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which transitions a label scheme allows, as masks for `CRF(num_tags, allowed, allowed_start, allowed_end)`.

    Args:
        labels: the tag of each id, in id order, e.g. `["O", "B-PER", "I-PER"]`.
        scheme: `"IOB2"`, `"IOB1"`, `"BIOES"` or `"plain"` (everything allowed; tags are not parsed).

    Returns:
        `(allowed, allowed_start, allowed_end)`: bool tensors of shapes `(K, K)` indexed `[from, to]`, `(K,)` and
        `(K,)`.

    The grammars:

    * IOB2: `I-X` only directly after `B-X` or `I-X`, so never at the start, after `O` or after another type.
    * IOB1: `I-X` may begin an entity; `B-X` only directly after `B-X` or `I-X` (it separates two adjacent entities
      of the same type), so never at the start, after `O` or after another type.
    * BIOES: after `B-X`/`I-X` only `I-X`/`E-X`; after `O`/`E-X`/`S-X` only `O`/`B-Y`/`S-Y`; start in `O`/`B`/`S`;
      end in `O`/`E`/`S`.
    """
    scheme = _canonical_scheme(scheme)
    num_tags = len(labels)
    if scheme == "plain":
        return (
            torch.ones(num_tags, num_tags, dtype=torch.bool),
            torch.ones(num_tags, dtype=torch.bool),
            torch.ones(num_tags, dtype=torch.bool),
        )
    parsed = [_parse_tag(tag, scheme) for tag in labels]

    def transition_ok(src: tuple[str, str | None], dst: tuple[str, str | None]) -> bool:
        (src_prefix, src_type), (dst_prefix, dst_type) = src, dst
        inside_same = src_prefix in ("B", "I") and src_type == dst_type
        if scheme == "IOB2":
            return dst_prefix != "I" or inside_same
        if scheme == "IOB1":
            return dst_prefix != "B" or inside_same
        # BIOES
        if src_prefix in ("B", "I"):
            return dst_prefix in ("I", "E") and src_type == dst_type
        return dst_prefix in ("O", "B", "S")

    def start_ok(tag: tuple[str, str | None]) -> bool:
        prefix = tag[0]
        if scheme == "IOB2":
            return prefix != "I"
        if scheme == "IOB1":
            return prefix != "B"
        return prefix in ("O", "B", "S")

    def end_ok(tag: tuple[str, str | None]) -> bool:
        return scheme != "BIOES" or tag[0] in ("O", "E", "S")

    allowed = torch.tensor([[transition_ok(src, dst) for dst in parsed] for src in parsed], dtype=torch.bool)
    allowed_start = torch.tensor([start_ok(tag) for tag in parsed], dtype=torch.bool)
    allowed_end = torch.tensor([end_ok(tag) for tag in parsed], dtype=torch.bool)
    return allowed.reshape(num_tags, num_tags), allowed_start, allowed_end


class CRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags.

    Args:
        num_tags: number of tags K.
        allowed: optional bool `(K, K)` mask of allowed transitions, indexed `[from, to]` (default: all allowed).
        allowed_start: optional bool `(K,)` mask of tags a sequence may start with.
        allowed_end: optional bool `(K,)` mask of tags a sequence may end with.

    Parameters: `transitions (K, K)` [from, to], `start_transitions (K,)`, `end_transitions (K,)`. The constraint masks
    are non-persistent buffers: they are not part of the state dict, their owner re-derives them (see
    `set_constraints`).
    """

    def __init__(
        self,
        num_tags: int,
        allowed: torch.Tensor | None = None,
        allowed_start: torch.Tensor | None = None,
        allowed_end: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or isinstance(num_tags, bool) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.register_buffer("allowed", torch.ones(num_tags, num_tags, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_start", torch.ones(num_tags, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_end", torch.ones(num_tags, dtype=torch.bool), persistent=False)
        self.set_constraints(allowed, allowed_start, allowed_end)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the transition scores near zero (uniform in [-0.1, 0.1])."""
        nn.init.uniform_(self.transitions, -0.1, 0.1)
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)

    @torch.no_grad()
    def set_constraints(
        self,
        allowed: torch.Tensor | None = None,
        allowed_start: torch.Tensor | None = None,
        allowed_end: torch.Tensor | None = None,
    ) -> None:
        """Copy new constraint masks into the buffers; `None` means everything allowed."""
        k = self.num_tags
        for name, value, shape in (
            ("allowed", allowed, (k, k)),
            ("allowed_start", allowed_start, (k,)),
            ("allowed_end", allowed_end, (k,)),
        ):
            buffer = getattr(self, name)
            if value is None:
                buffer.fill_(True)
                continue
            value = torch.as_tensor(value)
            if value.dtype != torch.bool:
                raise TypeError(f"{name} must be a bool tensor, got dtype {value.dtype}")
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} for num_tags={k}, got {tuple(value.shape)}")
            buffer.copy_(value)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # ------------------------------------------------------------------ public API

    def forward(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor | None = None,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Negative log-likelihood of `tags` given `emissions`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float scores.
            tags: `(batch, seq_len)` long gold tags; a negative tag at an on-position is unobserved and marginalised.
            mask: `(batch, seq_len)` bool, `None` = all on. Off-positions are skipped entirely.
            reduction: `"none"` (per sequence, `(batch,)`), `"sum"`, `"mean"` (over sequences) or `"token_mean"`
                (sum divided by the number of observed tags, i.e. on-positions with a tag >= 0).

        Returns:
            `logZ - log(sum of the scores of the paths that agree with every observed tag)`, reduced.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        mask = self._validate(emissions, tags=tags, mask=mask)
        batch_size, _, num_tags = emissions.shape
        dtype = self._compute_dtype(emissions)
        order, packed_mask = self._pack(mask)
        if packed_mask.size(1) == 0:
            nll = emissions.sum(dim=(1, 2)).to(dtype) * 0  # shape: (batch,); zeros that keep the autograd graph
        else:
            emissions = self._gather(emissions.to(dtype), order)  # shape: (batch, len, num_tags)
            packed_tags = tags.gather(1, order)  # shape: (batch, len)
            observed = packed_mask & (packed_tags >= 0)  # shape: (batch, len)
            tag_ids = torch.arange(num_tags, device=tags.device)
            # Observed positions keep only the gold tag's emission, so the partition function of the clamped
            # emissions sums exactly the paths that agree with every observed tag.
            gold = packed_tags.clamp(min=0).unsqueeze(-1)  # shape: (batch, len, 1)
            excluded = observed.unsqueeze(-1) & (tag_ids != gold)  # shape: (batch, len, num_tags)
            clamped = emissions.masked_fill(excluded, float("-inf"))  # shape: (batch, len, num_tags)
            both = torch.cat([emissions, clamped], dim=0)  # shape: (2 * batch, len, num_tags)
            log_z = self._log_partition(both, torch.cat([packed_mask, packed_mask], dim=0))  # shape: (2 * batch,)
            nll = log_z[:batch_size] - log_z[batch_size:]  # shape: (batch,)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        num_observed = (mask & (tags >= 0)).sum()
        return nll.sum() / num_observed.clamp(min=1)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None, pad_value: int = -100) -> torch.Tensor:
        """Viterbi: the highest-scoring tag sequence of each row, `(batch, seq_len)` long.

        Off-positions get `pad_value`; a row whose mask is all off is all `pad_value`. Not differentiable (tags are
        integers): it runs under `torch.inference_mode()` whatever the caller's grad mode, and returns an ordinary
        tensor (a copy) unless the caller is itself in inference mode.
        """
        # Inference mode skips autograd's view and version bookkeeping, which is a fifth of the time of the small
        # ops below (measured at batch 32, length 64, 9 tags on CPU).
        with torch.inference_mode():
            tags = self._viterbi(emissions, mask, pad_value)
        return tags if torch.is_inference_mode_enabled() else tags.clone()

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor | None, pad_value: int) -> torch.Tensor:
        # At a few tags and a few dozen rows an op costs more to dispatch than to compute, so the time goes with the
        # number of ops: three per position in the recursion, one per position in the backtrace, and a fixed number
        # for everything else, none per row. The max over the previous tag, with its argmax, is a max-pool over a
        # channels-last view: torch.max(dim) finds the argmax with a data-dependent branch per element, which on
        # fresh scores mispredicts about half the time (8 us per position at batch 32 and 9 tags on CPU, against
        # 2 us for the pool's branch-free vector loop; same values and first-maximum indices).
        mask = self._validate(emissions, mask=mask)
        batch_size, seq_len, num_tags = emissions.shape
        device = emissions.device
        lengths = mask.sum(dim=1)  # shape: (batch,)
        length = int(lengths.max()) if mask.numel() else 0
        if length == 0:
            return torch.full((batch_size, seq_len), pad_value, dtype=torch.long, device=device)
        packed_mask = torch.arange(length, device=device) < lengths.unsqueeze(1)  # shape: (batch, len)
        dtype = self._compute_dtype(emissions)

        # `scores` starts as the packed emissions, position- and then tag-major, in a fresh tensor, and becomes the
        # Viterbi score of every (position, tag, row) in place. A mask that is already packed (right padding, no
        # special tokens) needs no reordering.
        if torch.equal(mask[:, :length], packed_mask):
            order = None
            packed = emissions[:, :length]  # shape: (batch, len, num_tags)
        else:
            order = self._pack(mask)[0]  # shape: (batch, len)
            packed = self._gather(emissions, order)  # shape: (batch, len, num_tags)
        scores = packed.to(dtype).permute(1, 2, 0).clone(memory_format=torch.contiguous_format)  # (len, tags, batch)
        start, transitions, end = self._constrained_scores(dtype)
        scores[0] += start.unsqueeze(1)

        tags_x_rows = num_tags * batch_size
        candidates = scores.new_empty((num_tags, num_tags, batch_size))  # shape: (from, to, batch)
        # The same memory as a (1, to * batch, 1, from) channels-last image: pooling its width maxes over `from`.
        pool_input = candidates.view(1, 1, num_tags, tags_x_rows).permute(0, 3, 1, 2)
        transitions_from_to = transitions.unsqueeze(2).contiguous()  # shape: (from, to, 1)
        previous = scores.view(length, num_tags, 1, batch_size).unbind(0)  # each: (from, 1, batch)
        rows = scores.view(length, 1, tags_x_rows, 1, 1).unbind(0)  # each: (1, to * batch, 1, 1), as the pool's output
        pointers = []  # each: (1, to * batch, 1, 1), the best tag at t - 1 given `to` at t
        # The recursion runs unmasked over the packed prefix: a row's scores past its end are never read.
        add, kernel = torch.add, (1, num_tags)
        for prev, row in zip(previous, rows[1:]):
            add(prev, transitions_from_to, out=candidates)  # score at t - 1 [from] + transition [from, to]
            best, best_previous = _max_pool_with_indices(pool_input, kernel)
            row.add_(best)  # + the emissions at t, already there
            pointers.append(best_previous)

        # Each row's best last tag, from its scores at its own last on-position (an empty row reads position 0)...
        last = (lengths - 1).clamp(min=0).view(1, 1, batch_size).expand(1, num_tags, batch_size)
        final = scores.gather(0, last).view(num_tags, batch_size) + end.unsqueeze(1)  # shape: (num_tags, batch)
        current = final.argmax(dim=0, keepdim=True)  # shape: (1, batch)
        # ...enters the backtrace there: steps[t][to, row] is the best tag at t given `to` at t + 1, plus a spare
        # step into the last position; the step into a row's last position maps every tag to its best last tag,
        # whatever the backtrace carried through the positions past the row's end.
        spare = current.new_zeros((1, tags_x_rows, 1, 1))
        steps = torch.cat([*pointers, spare]).view(length, num_tags, batch_size)
        steps.scatter_(0, last, current.view(1, 1, batch_size).expand(1, num_tags, batch_size))
        tag = current.new_zeros((1, batch_size))
        path = []
        for step in reversed(steps.unbind(0)):
            tag = step.gather(0, tag)  # shape: (1, batch)
            path.append(tag)
        path.reverse()
        packed_tags = torch.where(packed_mask, torch.cat(path).t(), pad_value)  # shape: (batch, len)
        if order is not None:
            out = torch.full((batch_size, seq_len), pad_value, dtype=torch.long, device=device)
            return out.scatter_(1, order, packed_tags)
        if length == seq_len:
            return packed_tags
        return nn.functional.pad(packed_tags, (0, seq_len - length), value=pad_value)

    def marginals(
        self, emissions: torch.Tensor, mask: torch.Tensor | None = None, *, log: bool = False
    ) -> torch.Tensor:
        """Posterior marginals `P(tag_t = k | emissions)`, `(batch, seq_len, num_tags)`, by forward-backward.

        Each on-position sums to 1 over tags; off-positions are 0 (`-inf` with `log=True`, which returns log
        probabilities computed in log space: finite on on-positions even for constraint-forbidden tags).
        """
        mask = self._validate(emissions, mask=mask)
        batch_size, seq_len, num_tags = emissions.shape
        dtype = self._compute_dtype(emissions)
        fill = float("-inf") if log else 0.0
        out = torch.full((batch_size, seq_len, num_tags), fill, dtype=dtype, device=emissions.device)
        order, packed_mask = self._pack(mask)
        length = packed_mask.size(1)
        if length == 0:
            return out
        emissions = self._gather(emissions.to(dtype), order)  # shape: (batch, len, num_tags)
        start, transitions, end = self._constrained_scores(dtype)

        alpha = start + emissions[:, 0]  # shape: (batch, num_tags)
        alphas = [alpha]
        for t in range(1, length):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]  # (batch, num_tags)
            alpha = torch.where(packed_mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        log_z = torch.logsumexp(alpha + end, dim=1)  # shape: (batch,)

        beta = end.expand(batch_size, num_tags)  # shape: (batch, num_tags)
        betas = [beta]
        for t in range(length - 2, -1, -1):
            nxt = (emissions[:, t + 1] + beta).unsqueeze(1)  # shape: (batch, 1, num_tags [to])
            step = torch.logsumexp(transitions + nxt, dim=2)  # shape: (batch, num_tags [from])
            # Position t is the last of its row when t + 1 is off: beta stays the end score.
            beta = torch.where(packed_mask[:, t + 1].unsqueeze(1), step, beta)
            betas.append(beta)
        betas.reverse()

        log_marginals = torch.stack(alphas, 1) + torch.stack(betas, 1) - log_z[:, None, None]  # (batch, len, tags)
        values = log_marginals if log else log_marginals.exp()
        values = values.masked_fill(~packed_mask.unsqueeze(-1), fill)  # shape: (batch, len, num_tags)
        return out.scatter(1, order.unsqueeze(-1).expand(-1, -1, num_tags), values)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _compute_dtype(emissions: torch.Tensor) -> torch.dtype:
        # Half precision is upcast: log-space recursions lose too much in 16 bits. float64 stays float64.
        return torch.promote_types(emissions.dtype, torch.float32)

    def _constrained_scores(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = torch.where(self.allowed_start, self.start_transitions.to(dtype), DISALLOWED_SCORE)  # (num_tags,)
        transitions = torch.where(self.allowed, self.transitions.to(dtype), DISALLOWED_SCORE)  # (tags, tags)
        end = torch.where(self.allowed_end, self.end_transitions.to(dtype), DISALLOWED_SCORE)  # (num_tags,)
        return start, transitions, end

    @staticmethod
    def _pack(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stable-sort each row's on-positions to the front.

        Returns `order (batch, len)`, the original index of each packed position, and the packed mask
        `(batch, len)`, a left-aligned prefix mask; `len` is the longest row's number of on-positions.
        """
        lengths = mask.sum(dim=1)  # shape: (batch,)
        max_len = int(lengths.max()) if mask.numel() else 0
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :max_len]  # shape: (batch, len)
        positions = torch.arange(max_len, device=mask.device)
        packed_mask = positions.unsqueeze(0) < lengths.unsqueeze(1)  # shape: (batch, len)
        return order, packed_mask

    @staticmethod
    def _gather(emissions: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        index = order.unsqueeze(-1).expand(-1, -1, emissions.size(-1))  # shape: (batch, len, num_tags)
        return emissions.gather(1, index)

    def _log_partition(self, emissions: torch.Tensor, packed_mask: torch.Tensor) -> torch.Tensor:
        """Log-sum of the scores of all paths, `(batch,)`; 0 for empty rows. Needs a left-aligned mask."""
        start, transitions, end = self._constrained_scores(emissions.dtype)
        batch_size, _, num_tags = emissions.shape
        # Unmasked recursion over the packed prefix; each row's alpha is read back at its own last position.
        alpha = start + emissions[:, 0]  # shape: (batch, num_tags)
        alphas = [alpha]
        for emission in emissions[:, 1:].unbind(1):
            alpha = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emission  # shape: (batch, num_tags)
            alphas.append(alpha)
        last = (packed_mask.sum(dim=1) - 1).clamp(min=0).view(batch_size, 1, 1).expand(-1, 1, num_tags)
        alpha = torch.stack(alphas, dim=1).gather(1, last).squeeze(1)  # shape: (batch, num_tags)
        log_z = torch.logsumexp(alpha + end, dim=1)  # shape: (batch,)
        return torch.where(packed_mask[:, 0], log_z, torch.zeros_like(log_z))

    def _validate(
        self, emissions: torch.Tensor, tags: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Check shapes, dtypes and tag range eagerly; return the mask (all on when `None`)."""
        if not isinstance(emissions, torch.Tensor):
            raise TypeError(f"emissions must be a torch.Tensor, got {type(emissions).__name__}")
        if emissions.dim() != 3:
            raise ValueError(
                f"emissions must have shape (batch, seq_len, num_tags), got {emissions.dim()} dimensions "
                f"with shape {tuple(emissions.shape)}"
            )
        if emissions.size(2) != self.num_tags:
            raise ValueError(
                f"emissions must have num_tags={self.num_tags} in the last dimension, got shape "
                f"{tuple(emissions.shape)}"
            )
        if not emissions.is_floating_point():
            raise TypeError(f"emissions must be a floating-point tensor, got dtype {emissions.dtype}")
        expected = tuple(emissions.shape[:2])
        if mask is None:
            mask = torch.ones(expected, dtype=torch.bool, device=emissions.device)
        else:
            if not isinstance(mask, torch.Tensor):
                raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
            if tuple(mask.shape) != expected:
                raise ValueError(
                    f"mask must have shape (batch, seq_len) = {expected} like emissions, got {tuple(mask.shape)}"
                )
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype} (use mask.bool())")
        if tags is not None:
            if not isinstance(tags, torch.Tensor):
                raise TypeError(f"tags must be a torch.Tensor, got {type(tags).__name__}")
            if tuple(tags.shape) != expected:
                raise ValueError(
                    f"tags must have shape (batch, seq_len) = {expected} like emissions, got {tuple(tags.shape)}"
                )
            if tags.dtype != torch.long:
                raise TypeError(f"tags must have dtype torch.int64, got {tags.dtype}")
            out_of_range = mask & (tags >= self.num_tags)
            if out_of_range.any():
                row, col = (int(i) for i in out_of_range.nonzero()[0])
                raise ValueError(
                    f"tags must be < num_tags={self.num_tags} (or negative for an unobserved tag) where mask is on, "
                    f"got {int(tags[row, col])} at position ({row}, {col})"
                )
        return mask
