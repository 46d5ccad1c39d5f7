"""The CRF against brute-force oracles that enumerate every tag sequence, on tiny inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from seqft.modeling.crf import CRF, DISALLOWED_SCORE, allowed_transitions

IOB2_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOB1_LABELS = ["O", "I-PER", "B-PER", "I-LOC", "B-LOC"]
BIOES_LABELS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


# ---------------------------------------------------------------------------------------------------------- oracle


def effective_scores(crf: CRF):
    """Start/transition/end scores with disallowed entries replaced, computed independently of the CRF internals."""
    start = torch.where(crf.allowed_start, crf.start_transitions.detach(), torch.tensor(DISALLOWED_SCORE))
    trans = torch.where(crf.allowed, crf.transitions.detach(), torch.tensor(DISALLOWED_SCORE))
    end = torch.where(crf.allowed_end, crf.end_transitions.detach(), torch.tensor(DISALLOWED_SCORE))
    return start.double(), trans.double(), end.double()


def enumerate_paths(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor):
    """All (on-positions, path, score) for one row: `emissions (T, K)`, `mask (T,)`."""
    start, trans, end = effective_scores(crf)
    emissions = emissions.double()
    on = [t for t in range(emissions.size(0)) if mask[t]]
    paths = []
    for path in itertools.product(range(crf.num_tags), repeat=len(on)):
        if not on:
            paths.append(((), 0.0))
            continue
        score = start[path[0]] + end[path[-1]]
        score = score + sum(emissions[t, y] for t, y in zip(on, path))
        score = score + sum(trans[a, b] for a, b in zip(path, path[1:]))
        paths.append((path, float(score)))
    return on, paths


def logsumexp(values):
    values = list(values)
    if not values:
        return float("-inf")
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def oracle_nll(crf, emissions, tags, mask):
    on, paths = enumerate_paths(crf, emissions, mask)
    if not on:
        return 0.0
    log_z = logsumexp(score for _, score in paths)
    consistent = [
        score for path, score in paths if all(int(tags[t]) < 0 or int(tags[t]) == y for t, y in zip(on, path))
    ]
    return log_z - logsumexp(consistent)


def oracle_viterbi(crf, emissions, mask, pad_value=-100):
    on, paths = enumerate_paths(crf, emissions, mask)
    out = [pad_value] * emissions.size(0)
    if on:
        best, _ = max(paths, key=lambda item: item[1])
        for t, y in zip(on, best):
            out[t] = y
    return out


def oracle_marginals(crf, emissions, mask):
    on, paths = enumerate_paths(crf, emissions, mask)
    out = torch.zeros(emissions.shape, dtype=torch.float64)
    if not on:
        return out
    log_z = logsumexp(score for _, score in paths)
    for path, score in paths:
        for t, y in zip(on, path):
            out[t, y] += math.exp(score - log_z)
    return out


# --------------------------------------------------------------------------------------------------------- helpers


def random_crf(num_tags, generator, labels=None, scheme=None):
    constraints = allowed_transitions(labels, scheme) if labels is not None else (None, None, None)
    crf = CRF(num_tags, *constraints)
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    return crf


def random_batch(batch_size, seq_len, num_tags, generator, latent_prob=0.3):
    """Random emissions, tags with unobserved (-100) entries, and masks with holes; row 0 starts off, row 1 is empty."""
    emissions = torch.randn(batch_size, seq_len, num_tags, generator=generator) * 2
    tags = torch.randint(num_tags, (batch_size, seq_len), generator=generator)
    latent = torch.rand(batch_size, seq_len, generator=generator) < latent_prob
    tags = tags.masked_fill(latent, -100)
    mask = torch.rand(batch_size, seq_len, generator=generator) < 0.7
    mask[0, 0] = False
    mask[0, 2] = True
    mask[1] = False
    if batch_size > 2:
        mask[2] = True
    # Off positions may hold anything; make sure that is ignored.
    tags = torch.where(mask, tags, torch.full_like(tags, 99))
    return emissions, tags, mask


def violations(path, labels, scheme):
    """Number of constraint violations in a decoded path (a list of tag ids over the on-positions)."""
    allowed, allowed_start, allowed_end = allowed_transitions(labels, scheme)
    if not path:
        return 0
    count = int(not allowed_start[path[0]]) + int(not allowed_end[path[-1]])
    return count + sum(int(not allowed[a, b]) for a, b in zip(path, path[1:]))


# ----------------------------------------------------------------------------------------------------- vs. oracles


@pytest.mark.parametrize("num_tags,seq_len", [(3, 5), (4, 4)])
@pytest.mark.parametrize("constrained", [False, True])
def test_nll_matches_brute_force_with_partial_labels_and_holes(num_tags, seq_len, constrained):
    generator = torch.Generator().manual_seed(num_tags * 10 + seq_len + constrained)
    labels = ["O", "B-X", "I-X", "B-Y"][:num_tags] if constrained else None
    crf = random_crf(num_tags, generator, labels, "IOB2")
    emissions, tags, mask = random_batch(6, seq_len, num_tags, generator)
    expected = torch.tensor([oracle_nll(crf, emissions[b], tags[b], mask[b]) for b in range(6)], dtype=torch.float64)

    nll = crf(emissions, tags, mask, reduction="none")
    assert nll.shape == (6,)
    torch.testing.assert_close(nll.double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(crf(emissions, tags, mask).double(), expected.sum(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        crf(emissions, tags, mask, reduction="mean").double(), expected.mean(), rtol=1e-4, atol=1e-4
    )
    num_observed = (mask & (tags >= 0)).sum()
    torch.testing.assert_close(
        crf(emissions, tags, mask, reduction="token_mean").double(),
        expected.sum() / num_observed,
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("num_tags,seq_len", [(3, 5), (4, 5)])
@pytest.mark.parametrize("constrained", [False, True])
def test_viterbi_matches_brute_force(num_tags, seq_len, constrained):
    generator = torch.Generator().manual_seed(100 + num_tags + seq_len + constrained)
    labels = ["O", "B-X", "I-X", "B-Y"][:num_tags] if constrained else None
    crf = random_crf(num_tags, generator, labels, "IOB2")
    emissions, _, mask = random_batch(8, seq_len, num_tags, generator)
    expected = torch.tensor([oracle_viterbi(crf, emissions[b], mask[b], pad_value=-7) for b in range(8)])
    decoded = crf.decode(emissions, mask, pad_value=-7)
    assert decoded.dtype == torch.long
    assert torch.equal(decoded, expected)
    assert torch.equal(decoded[1], torch.full((seq_len,), -7))  # the all-off row


@pytest.mark.parametrize("constrained", [False, True])
def test_viterbi_with_left_aligned_masks_matches_brute_force(constrained):
    """Right padding only (the mask is already packed, so decoding takes its no-reordering path): rows of every length
    from 0 to seq_len, including rows that end before the longest one."""
    generator = torch.Generator().manual_seed(150 + constrained)
    labels = ["O", "B-X", "I-X", "B-Y"] if constrained else None
    crf = random_crf(4, generator, labels, "IOB2")
    lengths = torch.tensor([5, 0, 1, 3, 4, 2, 5, 3])
    emissions = torch.randn(8, 6, 4, generator=generator) * 2
    for mask in (torch.arange(6) < lengths.unsqueeze(1), torch.arange(6) < lengths.clamp(min=1).unsqueeze(1)):
        expected = torch.tensor([oracle_viterbi(crf, emissions[b], mask[b], pad_value=-7) for b in range(8)])
        assert torch.equal(crf.decode(emissions, mask, pad_value=-7), expected)
        for b in (0, 3):  # one row alone
            assert torch.equal(crf.decode(emissions[b : b + 1], mask[b : b + 1], pad_value=-7)[0], expected[b])


def test_decode_leaves_its_inputs_alone_whatever_the_grad_mode():
    generator = torch.Generator().manual_seed(151)
    crf = random_crf(4, generator)
    for mask in (None, torch.tensor([[True, True, True, False]]), torch.tensor([[False, True, False, True]])):
        emissions = torch.randn(1, 4, 4, generator=generator, requires_grad=True)
        before = emissions.detach().clone()
        decoded = crf.decode(emissions, mask)
        assert decoded.dtype == torch.long and not decoded.requires_grad
        assert torch.equal(emissions.detach(), before)
        # decode runs in inference mode inside, but hands back an ordinary tensor the caller may modify in place
        assert not decoded.is_inference()
        decoded.masked_fill_(decoded < 0, 0)
        with torch.inference_mode():
            assert torch.equal(crf.decode(emissions, mask), crf.decode(emissions.detach(), mask))


@pytest.mark.parametrize("num_tags,seq_len", [(3, 5), (4, 4)])
@pytest.mark.parametrize("constrained", [False, True])
def test_marginals_match_brute_force(num_tags, seq_len, constrained):
    generator = torch.Generator().manual_seed(200 + num_tags + seq_len + constrained)
    labels = ["O", "B-X", "I-X", "B-Y"][:num_tags] if constrained else None
    crf = random_crf(num_tags, generator, labels, "IOB2")
    emissions, _, mask = random_batch(6, seq_len, num_tags, generator)
    expected = torch.stack([oracle_marginals(crf, emissions[b], mask[b]) for b in range(6)])
    marginals = crf.marginals(emissions, mask)
    assert marginals.shape == emissions.shape
    torch.testing.assert_close(marginals.double(), expected, rtol=1e-4, atol=1e-5)
    sums = marginals.sum(-1)
    torch.testing.assert_close(sums[mask], torch.ones(int(mask.sum())))
    assert torch.all(marginals[~mask] == 0)
    log_marginals = crf.marginals(emissions, mask, log=True)
    torch.testing.assert_close(log_marginals[mask].exp(), marginals[mask])
    assert torch.all(torch.isfinite(log_marginals[mask]))
    assert torch.all(log_marginals[~mask] == float("-inf"))


def test_default_mask_is_all_on_and_matches_explicit_mask():
    generator = torch.Generator().manual_seed(3)
    crf = random_crf(3, generator)
    emissions, tags, _ = random_batch(3, 4, 3, generator)
    tags = tags.clamp(max=2)
    full = torch.ones(3, 4, dtype=torch.bool)
    torch.testing.assert_close(crf(emissions, tags), crf(emissions, tags, full))
    assert torch.equal(crf.decode(emissions), crf.decode(emissions, full))
    torch.testing.assert_close(crf.marginals(emissions), crf.marginals(emissions, full))


def test_holes_are_skipped_exactly():
    """A row with holes gives the same results as the same row with the off-positions removed."""
    generator = torch.Generator().manual_seed(4)
    crf = random_crf(4, generator)
    emissions = torch.randn(1, 6, 4, generator=generator)
    tags = torch.tensor([[5, 1, -100, 2, 7, 0]])  # off positions hold out-of-range junk
    mask = torch.tensor([[False, True, True, True, False, True]])
    keep = mask[0]
    compact_e, compact_t = emissions[:, keep], tags[:, keep]
    torch.testing.assert_close(crf(emissions, tags, mask), crf(compact_e, compact_t))
    assert torch.equal(crf.decode(emissions, mask)[0, keep], crf.decode(compact_e)[0])
    assert torch.equal(crf.decode(emissions, mask)[0, ~keep], torch.tensor([-100, -100]))
    torch.testing.assert_close(crf.marginals(emissions, mask)[0, keep], crf.marginals(compact_e)[0])


def test_batched_equals_one_row_at_a_time():
    generator = torch.Generator().manual_seed(5)
    crf = random_crf(4, generator)
    emissions, tags, mask = random_batch(5, 5, 4, generator)
    nll = crf(emissions, tags, mask, reduction="none")
    decoded = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for b in range(5):
        torch.testing.assert_close(nll[b], crf(emissions[b : b + 1], tags[b : b + 1], mask[b : b + 1])[()])
        assert torch.equal(decoded[b], crf.decode(emissions[b : b + 1], mask[b : b + 1])[0])
        torch.testing.assert_close(marginals[b], crf.marginals(emissions[b : b + 1], mask[b : b + 1])[0])


def test_fully_observed_nll_is_log_partition_minus_gold_score():
    generator = torch.Generator().manual_seed(6)
    crf = random_crf(3, generator)
    emissions = torch.randn(1, 4, 3, generator=generator, dtype=torch.float64)
    tags = torch.tensor([[2, 0, 1, 1]])
    _, paths = enumerate_paths(crf, emissions[0], torch.ones(4, dtype=torch.bool))
    gold = dict(paths)[(2, 0, 1, 1)]
    log_z = logsumexp(score for _, score in paths)
    assert crf(emissions, tags).item() == pytest.approx(log_z - gold, abs=1e-9)


def test_all_unobserved_gives_zero_loss_and_empty_rows_are_safe():
    generator = torch.Generator().manual_seed(7)
    crf = random_crf(3, generator)
    emissions = torch.randn(2, 4, 3, generator=generator, requires_grad=True)
    tags = torch.full((2, 4), -100)
    nll = crf(emissions, tags, reduction="none")
    torch.testing.assert_close(nll, torch.zeros(2), atol=1e-5, rtol=0)

    empty = torch.zeros(2, 4, dtype=torch.bool)
    loss = crf(emissions, tags.clamp(min=0), empty, reduction="token_mean")
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph
    assert torch.equal(crf.decode(emissions, empty), torch.full((2, 4), -100))
    assert torch.equal(crf.marginals(emissions, empty), torch.zeros(2, 4, 3))
    zero_len = torch.randn(2, 0, 3)
    assert crf.decode(zero_len).shape == (2, 0)
    assert crf(zero_len, torch.zeros(2, 0, dtype=torch.long)).item() == 0.0


def test_low_and_double_precision():
    generator = torch.Generator().manual_seed(8)
    crf = random_crf(3, generator)
    emissions, tags, mask = random_batch(3, 4, 3, generator)
    reference = crf(emissions, tags, mask, reduction="none")
    assert crf(emissions.double(), tags, mask).dtype == torch.float64
    half = crf(emissions.bfloat16(), tags, mask, reduction="none")
    assert half.dtype == torch.float32  # computed in float32
    torch.testing.assert_close(half, reference, atol=0.1, rtol=0.05)
    assert crf.marginals(emissions.half(), mask).dtype == torch.float32


# ------------------------------------------------------------------------------------------------------ gradients


def test_gradcheck_nll_float64():
    generator = torch.Generator().manual_seed(9)
    crf = random_crf(3, generator, ["O", "B-X", "I-X"], "IOB2").double()
    emissions, tags, mask = random_batch(3, 4, 3, generator)
    emissions = emissions.double().requires_grad_(True)

    def nll(emissions, transitions, start, end):
        params = {"transitions": transitions, "start_transitions": start, "end_transitions": end}
        return torch.func.functional_call(crf, params, (emissions, tags, mask), {"reduction": "none"})

    params = [
        p.detach().clone().requires_grad_(True) for p in (crf.transitions, crf.start_transitions, crf.end_transitions)
    ]
    assert torch.autograd.gradcheck(nll, (emissions, *params), eps=1e-6, atol=1e-5)


def test_gradients_are_finite_and_zero_for_disallowed_transitions():
    generator = torch.Generator().manual_seed(10)
    crf = random_crf(5, generator, IOB2_LABELS, "IOB2")
    emissions, tags, mask = random_batch(4, 5, 5, generator)
    emissions.requires_grad_(True)
    crf(emissions, tags.masked_fill(tags > 0, -100), mask).backward()  # only O observed: always consistent
    for grad in (emissions.grad, crf.transitions.grad, crf.start_transitions.grad, crf.end_transitions.grad):
        assert torch.all(torch.isfinite(grad))
    assert torch.all(crf.transitions.grad[~crf.allowed] == 0)
    assert torch.all(crf.start_transitions.grad[~crf.allowed_start] == 0)


def test_training_moves_transitions_towards_gold():
    generator = torch.Generator().manual_seed(11)
    crf = random_crf(3, generator)
    emissions = torch.zeros(8, 5, 3)
    tags = torch.tensor([[0, 1, 2, 0, 1]]).repeat(8, 1)
    optimizer = torch.optim.SGD(crf.parameters(), lr=0.5)
    before = crf(emissions, tags).item()
    for _ in range(20):
        optimizer.zero_grad()
        crf(emissions, tags, reduction="mean").backward()
        optimizer.step()
    assert crf(emissions, tags).item() < before / 4
    assert torch.equal(crf.decode(emissions)[0], tags[0])


# ---------------------------------------------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    "labels,scheme",
    [(IOB2_LABELS, "IOB2"), (IOB1_LABELS, "IOB1"), (BIOES_LABELS, "BIOES")],
    ids=["IOB2", "IOB1", "BIOES"],
)
def test_decoded_paths_never_violate_constraints(labels, scheme):
    generator = torch.Generator().manual_seed(len(labels))
    crf = CRF(len(labels), *allowed_transitions(labels, scheme))
    with torch.no_grad():
        crf.transitions.normal_(0, 3, generator=generator)  # strong random transitions that push towards violations
    for _ in range(10):
        emissions = torch.randn(32, 7, len(labels), generator=generator) * 5
        mask = torch.rand(32, 7, generator=generator) < 0.8
        decoded = crf.decode(emissions, mask)
        for row, row_mask in zip(decoded.tolist(), mask.tolist()):
            path = [tag for tag, on in zip(row, row_mask) if on]
            assert violations(path, labels, scheme) == 0, (path, [labels[t] for t in path])
        # ...and constraint-forbidden tags get (numerically) no posterior mass on their own.
        marginals = crf.marginals(emissions, mask)
        assert torch.all(marginals[mask].sum(-1).sub(1).abs() < 1e-4)


def test_unconstrained_decoding_does_violate_the_grammar():
    """Sanity check of the test above: without constraints the same emissions do produce invalid paths."""
    generator = torch.Generator().manual_seed(12)
    crf = CRF(len(IOB2_LABELS))
    emissions = torch.randn(64, 7, len(IOB2_LABELS), generator=generator) * 5
    paths = crf.decode(emissions).tolist()
    assert sum(violations(path, IOB2_LABELS, "IOB2") for path in paths) > 0


def test_iob2_table():
    allowed, start, end = allowed_transitions(IOB2_LABELS, "IOB2")
    idx = {tag: i for i, tag in enumerate(IOB2_LABELS)}
    assert start.tolist() == [True, True, False, True, False]
    assert end.all()
    assert not allowed[idx["O"], idx["I-PER"]]
    assert not allowed[idx["B-LOC"], idx["I-PER"]]
    assert not allowed[idx["I-LOC"], idx["I-PER"]]
    assert allowed[idx["B-PER"], idx["I-PER"]] and allowed[idx["I-PER"], idx["I-PER"]]
    assert allowed[idx["I-PER"], idx["B-PER"]] and allowed[idx["I-PER"], idx["O"]] and allowed[idx["O"], idx["B-LOC"]]
    assert int((~allowed).sum()) == 6  # {O, B-LOC, I-LOC} -> I-PER and {O, B-PER, I-PER} -> I-LOC


def test_iob1_table():
    allowed, start, end = allowed_transitions(IOB1_LABELS, "IOB1")
    idx = {tag: i for i, tag in enumerate(IOB1_LABELS)}
    assert start.tolist() == [True, True, False, True, False]
    assert end.all()
    assert allowed[idx["O"], idx["I-PER"]] and allowed[idx["I-LOC"], idx["I-PER"]]  # I may begin an entity
    assert allowed[idx["I-PER"], idx["B-PER"]] and allowed[idx["B-PER"], idx["B-PER"]]
    assert not allowed[idx["O"], idx["B-PER"]]
    assert not allowed[idx["I-LOC"], idx["B-PER"]] and not allowed[idx["B-LOC"], idx["B-PER"]]
    assert int((~allowed).sum()) == 6


def test_bioes_table():
    allowed, start, end = allowed_transitions(BIOES_LABELS, "BIOES")
    idx = {tag: i for i, tag in enumerate(BIOES_LABELS)}
    assert [BIOES_LABELS[i] for i in range(len(BIOES_LABELS)) if start[i]] == ["O", "B-PER", "S-PER", "B-LOC", "S-LOC"]
    assert [BIOES_LABELS[i] for i in range(len(BIOES_LABELS)) if end[i]] == ["O", "E-PER", "S-PER", "E-LOC", "S-LOC"]
    outside = ["O", "E-PER", "S-PER", "E-LOC", "S-LOC"]
    for src in BIOES_LABELS:
        allowed_next = {BIOES_LABELS[j] for j in range(len(BIOES_LABELS)) if allowed[idx[src], j]}
        if src in outside:
            assert allowed_next == {"O", "B-PER", "S-PER", "B-LOC", "S-LOC"}, src
        else:
            entity_type = src[2:]
            assert allowed_next == {f"I-{entity_type}", f"E-{entity_type}"}, src


def test_plain_allows_everything_and_needs_no_parsing():
    allowed, start, end = allowed_transitions(["PER", "LOC", "whatever"], "plain")
    assert allowed.shape == (3, 3) and allowed.all() and start.all() and end.all()


def test_scheme_errors_name_the_tag():
    with pytest.raises(
        ValueError, match=r"label 'E-PER' is not a valid IOB2 tag: expected 'O' or B-<type> or I-<type>"
    ):
        allowed_transitions(["O", "B-PER", "E-PER"], "IOB2")
    with pytest.raises(ValueError, match=r"label 'PER' is not a valid BIOES tag"):
        allowed_transitions(["O", "PER"], "BIOES")
    with pytest.raises(ValueError, match=r"label 'B-' is not a valid IOB1 tag"):
        allowed_transitions(["O", "B-"], "IOB1")
    with pytest.raises(
        ValueError, match=r"unknown label scheme 'BILOU'; expected one of \['IOB2', 'IOB1', 'BIOES', 'plain'\]"
    ):
        allowed_transitions(["O"], "BILOU")
    assert allowed_transitions(["O", "B-X"], "iob2")[0].shape == (2, 2)  # scheme names are case-insensitive


# ------------------------------------------------------------------------------------------ module & validation


def test_constraint_masks_are_not_in_the_state_dict():
    crf = CRF(5, *allowed_transitions(IOB2_LABELS, "IOB2"))
    assert set(crf.state_dict()) == {"transitions", "start_transitions", "end_transitions"}
    assert {name for name, _ in crf.named_buffers()} == {"allowed", "allowed_start", "allowed_end"}
    assert crf.transitions.abs().max() <= 0.1  # initialised near zero
    crf.set_constraints()
    assert crf.allowed.all() and crf.allowed_start.all() and crf.allowed_end.all()


def test_validation_messages():
    crf = CRF(3)
    emissions = torch.randn(2, 4, 3)
    tags = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(
        ValueError,
        match=r"emissions must have shape \(batch, seq_len, num_tags\), got 2 dimensions with shape \(2, 4\)",
    ):
        crf.decode(torch.randn(2, 4))
    with pytest.raises(
        ValueError, match=r"emissions must have num_tags=3 in the last dimension, got shape \(2, 4, 5\)"
    ):
        crf.marginals(torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match=r"emissions must be a floating-point tensor, got dtype torch.int64"):
        crf.decode(torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"tags must have shape \(batch, seq_len\) = \(2, 4\) like emissions, got \(2, 3\)"
    ):
        crf(emissions, tags[:, :3])
    with pytest.raises(TypeError, match=r"tags must have dtype torch.int64, got torch.float32"):
        crf(emissions, tags.float())
    with pytest.raises(
        ValueError, match=r"mask must have shape \(batch, seq_len\) = \(2, 4\) like emissions, got \(4, 2\)"
    ):
        crf(emissions, tags, torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask must have dtype torch.bool, got torch.int64 \(use mask.bool\(\)\)"):
        crf.decode(emissions, torch.ones(2, 4, dtype=torch.long))
    bad = tags.clone()
    bad[1, 2] = 3
    with pytest.raises(ValueError, match=r"tags must be < num_tags=3 .* where mask is on, got 3 at position \(1, 2\)"):
        crf(emissions, bad)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False
    crf(emissions, bad, mask)  # out of range but masked off: ignored
    with pytest.raises(
        ValueError, match=r"reduction must be one of \['none', 'sum', 'mean', 'token_mean'\], got 'avg'"
    ):
        crf(emissions, tags, reduction="avg")
    with pytest.raises(ValueError, match=r"num_tags must be a positive int, got 0"):
        CRF(0)
    with pytest.raises(ValueError, match=r"allowed must have shape \(3, 3\) for num_tags=3, got \(2, 2\)"):
        CRF(3, allowed=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"allowed_end must be a bool tensor, got dtype torch.float32"):
        CRF(3, allowed_end=torch.ones(3))
