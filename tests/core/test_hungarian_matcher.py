"""Hungarian assignment against brute force, and SparseInst's matching score."""
import itertools

import pytest
import torch

from insplug.core.matchers.hungarian import batched_linear_assignment, linear_assignment
from insplug.core.sparseinst.loss import match_predictions, matching_scores


def brute_force(cost, maximize):
    """Best assignment by enumerating every injective map of the smaller side."""
    n, m = cost.shape
    best, best_pairs = None, None
    if n >= m:
        for rows in itertools.permutations(range(n), m):
            pairs = sorted(zip(rows, range(m)))
            total = sum(float(cost[r, c]) for r, c in pairs)
            if best is None or (total > best if maximize else total < best):
                best, best_pairs = total, pairs
    else:
        for cols in itertools.permutations(range(m), n):
            pairs = list(zip(range(n), cols))
            total = sum(float(cost[r, c]) for r, c in pairs)
            if best is None or (total > best if maximize else total < best):
                best, best_pairs = total, pairs
    return best, best_pairs


@pytest.mark.parametrize('shape', [(1, 1), (3, 3), (5, 3), (3, 5), (6, 4), (2, 6)])
@pytest.mark.parametrize('maximize', [False, True])
def test_linear_assignment_matches_brute_force(shape, maximize):
    gen = torch.Generator().manual_seed(hash(shape) % 1000 + int(maximize))
    for _ in range(5):
        cost = torch.rand(shape, generator=gen, dtype=torch.float64)
        rows, cols = linear_assignment(cost, maximize=maximize)
        best, best_pairs = brute_force(cost, maximize)
        assert len(rows) == min(shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert float(cost[rows, cols].sum()) == pytest.approx(best, abs=1e-12)
        # random continuous costs have a unique optimum: the same pairs
        assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(best_pairs)


def test_linear_assignment_empty_and_bad_input():
    rows, cols = linear_assignment(torch.zeros(5, 0))
    assert rows.shape == (0,) and cols.shape == (0,) and rows.dtype == torch.int64
    with pytest.raises(ValueError, match='NaN or inf'):
        linear_assignment(torch.tensor([[0.0, float('nan')]]))
    with pytest.raises(ValueError, match=r'\(N, M\)'):
        linear_assignment(torch.zeros(2, 2, 2))


def test_batched_assignment_uses_each_images_own_columns():
    gen = torch.Generator().manual_seed(0)
    sizes = [2, 0, 3]
    scores = torch.rand(3, 4, sum(sizes), generator=gen)
    results = batched_linear_assignment(scores, sizes, maximize=True)
    starts = [0, 2, 2]
    for b, (rows, cols) in enumerate(results):
        block = scores[b, :, starts[b]:starts[b] + sizes[b]]
        best, _ = brute_force(block, maximize=True) if sizes[b] else (0.0, [])
        assert len(rows) == sizes[b]
        assert float(block[rows, cols].sum()) == pytest.approx(best)


def test_matching_score_formula_against_loops():
    gen = torch.Generator().manual_seed(1)
    b, n, k, m, p = 2, 4, 3, 3, 10
    cls = torch.randn(b, n, k, generator=gen)
    masks = torch.randn(b, n, p, generator=gen)
    labels = torch.tensor([2, 0, 1])
    targets = (torch.rand(m, p, generator=gen) > 0.5).float()
    scores = matching_scores(cls, masks, labels, targets, alpha=0.8)
    for bi in range(b):
        for i in range(n):
            for j in range(m):
                prob = [1 / (1 + torch.exp(-v).item()) for v in masks[bi, i]]
                tgt = targets[j].tolist()
                dice = 2 * sum(a * t for a, t in zip(prob, tgt)) / (
                    sum(a * a for a in prob) + sum(t * t for t in tgt) + 1e-4)
                p_cls = 1 / (1 + torch.exp(-cls[bi, i, labels[j]]).item())
                assert scores[bi, i, j].item() == pytest.approx(dice ** 0.8 * p_cls ** 0.2,
                                                                rel=1e-5)


def test_match_predictions_recovers_planted_assignment_and_empty_images():
    # predictions are exact (logit +-8) copies of permuted targets; image 1 has no targets
    gen = torch.Generator().manual_seed(2)
    targets = (torch.rand(3, 6, 6, generator=gen) > 0.5).float()
    perm = [4, 0, 2]  # target j is predicted by query perm[j]
    masks = torch.full((2, 5, 6, 6), -8.0)
    cls = torch.full((2, 5, 4), -4.0)
    labels = torch.tensor([1, 3, 0])
    for j, q in enumerate(perm):
        masks[0, q] = targets[j] * 16 - 8
        cls[0, q, labels[j]] = 4.0
    out = match_predictions(cls, masks, [labels, torch.zeros(0, dtype=torch.int64)], targets)
    rows, cols = out[0]
    assert dict(zip(cols.tolist(), rows.tolist())) == dict(enumerate(perm))
    assert out[1][0].numel() == 0 and out[1][1].numel() == 0
    none = match_predictions(cls, masks, [torch.zeros(0, dtype=torch.int64)] * 2,
                             torch.zeros(0, 6, 6))
    assert all(r.numel() == 0 and c.numel() == 0 for r, c in none)
