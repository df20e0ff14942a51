"""Lovasz hinge against an independent evaluation of the Lovasz extension of the Jaccard loss.

The reference uses the integral form of the Lovasz extension of a set function F with F(empty)=0,
``f(m) = int_0^inf F({i : m_i >= t}) dt`` for m >= 0, with F the Jaccard loss computed from sets,
``F(M) = |M| / |fg u M|``; the code under test uses the sorted-prefix (greedy) form instead.
"""
import itertools

import pytest
import torch

from insplug.core.losses.lovasz import lovasz_hinge, lovasz_hinge_batched, lovasz_hinge_flat


def jaccard_set_loss(mispredicted, foreground):
    union = set(mispredicted) | set(foreground)
    return len(mispredicted) / len(union) if union else 0.0


def lovasz_extension_integral(errors, labels):
    """Brute force: integrate the Jaccard set loss of the level sets of max(errors, 0)."""
    m = [max(float(e), 0.0) for e in errors]
    fg = {i for i, y in enumerate(labels) if y}
    levels = sorted(set(v for v in m if v > 0), reverse=True) + [0.0]
    total = 0.0
    for upper, lower in zip(levels[:-1], levels[1:]):
        level_set = [i for i, v in enumerate(m) if v >= upper]
        total += (upper - lower) * jaccard_set_loss(level_set, fg)
    return total


def reference_hinge(logits, labels):
    errors = [1.0 - float(x) * (2 * int(y) - 1) for x, y in zip(logits, labels)]
    return lovasz_extension_integral(errors, labels)


@pytest.mark.parametrize('seed', range(8))
def test_matches_integral_form(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(7, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, 2, (7,), generator=gen)
    got = float(lovasz_hinge_flat(logits, labels))
    assert got == pytest.approx(reference_hinge(logits.tolist(), labels.tolist()), abs=1e-9)


def test_vertices_give_jaccard_loss():
    """At errors that are 0/1 indicators the extension equals the set function itself."""
    labels = [1, 1, 0, 1, 0]
    fg = {0, 1, 3}
    for bits in itertools.product([0, 1], repeat=5):
        # logit chosen so the hinge error is exactly 1 on `bits` and exactly 0 elsewhere
        logits = torch.tensor([0.0 if b else (1.0 if y else -1.0) for b, y in zip(bits, labels)],
                              dtype=torch.float64)
        got = float(lovasz_hinge_flat(logits, torch.tensor(labels)))
        expected = jaccard_set_loss([i for i, b in enumerate(bits) if b], fg)
        assert got == pytest.approx(expected, abs=1e-12)


def test_all_background_and_all_foreground():
    assert float(lovasz_hinge_flat(torch.full((4,), -3.0), torch.zeros(4))) == 0.0
    assert float(lovasz_hinge_flat(torch.full((4,), 3.0), torch.ones(4))) == 0.0
    # all-background labels, every pixel a false positive with error 2: J = 1 at the top level
    assert float(lovasz_hinge_flat(torch.ones(4), torch.zeros(4))) == pytest.approx(2.0)


def test_per_image_and_pooled_and_shapes():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (3, 4, 5), generator=gen)
    per = [reference_hinge(logits[b].flatten().tolist(), labels[b].flatten().tolist())
           for b in range(3)]
    assert float(lovasz_hinge(logits, labels)) == pytest.approx(sum(per) / 3, abs=1e-9)
    pooled = reference_hinge(logits.flatten().tolist(), labels.flatten().tolist())
    assert float(lovasz_hinge(logits, labels, per_image=False)) == pytest.approx(pooled, abs=1e-9)
    assert float(lovasz_hinge(logits.flatten(1), labels.flatten(1))) == pytest.approx(
        sum(per) / 3, abs=1e-9)


def test_valid_mask_equals_loss_on_subset():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 9, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (2, 9), generator=gen)
    valid = torch.rand(2, 9, generator=gen) > 0.4
    got = lovasz_hinge_batched(logits, labels, valid)
    for b in range(2):
        keep = valid[b]
        expected = reference_hinge(logits[b][keep].tolist(), labels[b][keep].tolist())
        assert float(got[b]) == pytest.approx(expected, abs=1e-9)


def test_empty_inputs_and_bad_shapes():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = lovasz_hinge(logits, torch.zeros(0, 5))
    loss.backward()
    assert float(loss) == 0.0
    assert float(lovasz_hinge(torch.zeros(2, 0), torch.zeros(2, 0))) == 0.0
    with pytest.raises(ValueError, match='labels'):
        lovasz_hinge(torch.zeros(2, 3), torch.zeros(2, 4))


def test_gradient_is_finite_difference_away_from_ties():
    """The loss is piecewise linear: away from ties of errors (and from errors at 0) autograd's
    gradient is the true gradient, hence a subgradient; compare with central differences."""
    gen = torch.Generator().manual_seed(11)
    for _ in range(5):
        logits = (torch.randn(2, 6, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
        labels = torch.randint(0, 2, (2, 6), generator=gen)
        errors = 1 - logits.detach() * (2 * labels - 1)
        gaps = (errors.unsqueeze(2) - errors.unsqueeze(1)).abs()
        gaps = gaps + torch.eye(6, dtype=torch.float64) * 10
        if gaps.min() < 1e-3 or errors.abs().min() < 1e-3:
            continue
        loss = lovasz_hinge(logits, labels)
        loss.backward()
        eps = 1e-6
        numeric = torch.zeros_like(logits)
        for idx in itertools.product(range(2), range(6)):
            plus, minus = logits.detach().clone(), logits.detach().clone()
            plus[idx] += eps
            minus[idx] -= eps
            numeric[idx] = (lovasz_hinge(plus, labels) - lovasz_hinge(minus, labels)) / (2 * eps)
        torch.testing.assert_close(logits.grad, numeric, atol=1e-6, rtol=1e-5)
        # subgradient inequality against random points: f(y) >= f(x) + g.(y - x)
        for _ in range(20):
            other = torch.randn(2, 6, generator=gen, dtype=torch.float64) * 2
            lhs = float(lovasz_hinge(other, labels))
            rhs = float(loss) + float((logits.grad * (other - logits.detach())).sum())
            assert lhs >= rhs - 1e-9
