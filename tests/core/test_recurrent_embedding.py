"""Recurrent pixel embedding core (Kong and Fowlkes, CVPR 2018).

References are independent: a numpy mean-shift written per point from the release's layer
formulas (meanshift_S_is_XX .. meanshift_Y_is_XP, L2normalization), gradient checks of the
grouping module, hand-worked calibrated cosine losses and brute-force pair loops.
"""
import math

import numpy as np
import pytest
import torch

from insplug.core.embedding_grouping.recurrent_meanshift import (
    RecurrentMeanShiftClustering, calibrated_cosine_loss, instance_id_map, l2_normalize,
    mean_shift_step, pair_weights, recurrent_embedding_loss, recurrent_mean_shift,
    pixel_subset, sample_pixels)


def numpy_gbms(x, delta, iters):
    """Per-point loops: S = X X^T, G = exp((S - 1) / delta^2), d = rowsum + 1e-6,
    Y_i = sum_j G_ji X_j / (d_i + 1e-7), then x / (||x|| + 1e-5)."""
    x = np.array(x, dtype=np.float64)
    out = [x.copy()]
    for _ in range(iters):
        n = x.shape[0]
        y = np.zeros_like(x)
        for i in range(n):
            g = np.array([math.exp((float(x[i] @ x[j]) - 1) / delta ** 2) for j in range(n)])
            d = g.sum() + 1e-6
            acc = np.zeros(x.shape[1])
            for j in range(n):
                acc += math.exp((float(x[j] @ x[i]) - 1) / delta ** 2) * x[j]
            y[i] = acc / (d + 1e-7)
            y[i] = y[i] / (np.linalg.norm(y[i]) + 1e-5)
        x = y
        out.append(x.copy())
    return out


def random_sphere(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def test_l2_normalize_release_eps():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    y = l2_normalize(x)
    assert torch.allclose(y[0], torch.tensor([3, 4], dtype=torch.float64) / (5 + 1e-5))
    assert torch.equal(y[1], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize('delta', [0.1, 0.3, 1.0])
def test_mean_shift_matches_numpy_reference(delta):
    x = random_sphere(12, 4, seed=1)
    ref = numpy_gbms(x.numpy(), delta, 3)
    ours = recurrent_mean_shift(x, delta, 3)
    assert len(ours) == 4
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-12)


def test_mean_shift_with_reference_set():
    x = random_sphere(7, 3, seed=2)
    r = random_sphere(5, 3, seed=3)
    y = mean_shift_step(x, 0.4, r)
    for i in range(7):
        g = torch.exp((r @ x[i] - 1) / 0.16)
        expect = (g[:, None] * r).sum(0) / (g.sum() + 1e-6 + 1e-7)
        expect = expect / (expect.norm() + 1e-5)
        assert torch.allclose(y[i], expect, atol=1e-12)


def test_grouping_module_gradcheck():
    x = random_sphere(6, 3, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: mean_shift_step(v, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda v: recurrent_mean_shift(v, 0.7, 3)[-1], (x,))
    raw = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: recurrent_mean_shift(l2_normalize(v), 0.5, 2)[-1],
                                    (raw,))


def test_loops_contract_clusters():
    """Two tight groups on the sphere: the loops pull each group onto one point and keep the
    groups apart (mean-shift dynamics, the paper's convergence argument)."""
    base = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    noise = 0.05 * torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    x = l2_normalize((base[:, None] + noise).reshape(20, 3))
    y = recurrent_mean_shift(x, 0.2, 10)[-1]
    spread_before = (x[:10] @ x[:10].t()).min()
    spread_after = (y[:10] @ y[:10].t()).min()
    assert spread_after > 1 - 1e-4 > spread_before
    assert (y[:10] @ y[10:].t()).max() < 0.2


def test_pair_weights_brute_force():
    ids = torch.tensor([3, 3, 7, 1, 3, 7])
    w = pair_weights(ids).double()
    n = {int(i): int((ids == i).sum()) for i in ids}
    ref = torch.tensor([[1 / (n[int(a)] * n[int(b)]) for b in ids] for a in ids],
                       dtype=torch.float64)
    assert torch.allclose(w, ref / ref.sum(), atol=1e-7)
    assert abs(float(w.sum()) - 1) < 1e-6


def test_calibrated_cosine_loss_hand_worked():
    """a = (1, 0), b = (0.6, 0.8) in instance 1, c = (0, 1) in instance 2.

    n = (2, 2, 1): raw weights 1/4 within {a, b}, 1/2 between, 1 for (c, c); they sum to 4.
    Calibrated similarities: s(a, b) = 0.8, s(a, c) = 0.5, s(b, c) = 0.9. Pull: (a, b) and
    (b, a): 2 * (1/16) * 0.2 = 0.025. Push at alpha 0.1: (a, c), (c, a): 2 * (1/8) * 0.4 = 0.1;
    (b, c), (c, b): 2 * (1/8) * 0.8 = 0.2; total 0.3.
    """
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    pull, push = calibrated_cosine_loss(emb, torch.tensor([1, 1, 2]), 0.1)
    assert abs(float(pull) - 0.025) < 1e-12
    assert abs(float(push) - 0.3) < 1e-12
    _, push = calibrated_cosine_loss(emb, torch.tensor([1, 1, 2]), 0.85)
    assert abs(float(push) - 2 * 0.125 * 0.05) < 1e-12  # only (b, c) beyond the margin


def test_instance_id_map():
    masks = torch.zeros(3, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # overlaps instance 0 at pixel 1: the later one wins
    masks[2, 3] = True
    ids = instance_id_map(masks, torch.tensor([0, 0, 1]), 2)
    assert ids.tolist() == [[1, 2, 2, 0], [0, 0, 0, 3]]


def test_sample_pixels_counts():
    assert sample_pixels(100, 0.2).numel() == 20
    assert sample_pixels(100000, 0.35).numel() == 4000  # the release's cap
    idx = sample_pixels(50, 1.0)
    assert sorted(idx.tolist()) == list(range(50))
    idx = sample_pixels(1000, 0.5)
    assert idx.unique().numel() == 500


def test_loss_without_loops_brute_force():
    """num_iters 0, every pixel sampled, stride 1: the loss is the pair sum over one image's
    pixels (background one group), computed here by explicit loops."""
    torch.manual_seed(0)
    emb = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 2:, 3:] = True
    out = recurrent_embedding_loss(emb, masks, torch.tensor([0, 0]), num_iters=0,
                                   margin=0.3, sample_ratio=1.0, pull_weight=1.0,
                                   push_weight=5.0)
    x = emb[0].flatten(1).t()
    x = x / (x.norm(dim=1, keepdim=True) + 1e-5)
    ids = torch.zeros(20, dtype=torch.long)
    ids[masks[0].flatten()] = 1
    ids[masks[1].flatten()] = 2
    counts = torch.bincount(ids)
    total = pull = push = 0.0
    for i in range(20):
        for j in range(20):
            total += 1 / float(counts[ids[i]] * counts[ids[j]])
    for i in range(20):
        for j in range(20):
            w = 1 / float(counts[ids[i]] * counts[ids[j]]) / total
            s = 0.5 + 0.5 * float(x[i] @ x[j])
            if ids[i] == ids[j]:
                pull += w * (1 - s)
            else:
                push += w * max(0.0, s - 0.3)
    assert abs(float(out['loss_pull']) - pull) < 1e-10
    assert abs(float(out['loss_push']) - 5 * push) < 1e-10


def test_loss_with_loops_backpropagates_through_grouping():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4] = True
    masks[1, 4:, :4] = True
    masks[2, 2:6, 2:6] = True
    img = torch.tensor([0, 0, 1])
    kw = dict(bandwidth=0.5, sample_ratio=1.0)
    no_loop = recurrent_embedding_loss(emb, masks, img, num_iters=0, **kw)
    loops = recurrent_embedding_loss(emb, masks, img, num_iters=3, **kw)
    # every loop adds one more pair of loss terms (its own stage)
    assert float(loops['loss_push']) > float(no_loop['loss_push'])
    sum(loops.values()).backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_pixel_subset():
    assert pixel_subset(10, 1).tolist() == list(range(10))
    sub = pixel_subset(64, 4)
    assert sub.numel() == 4 and sub.unique().numel() == 4 and int(sub.max()) < 64
    assert pixel_subset(65, 2).numel() == 17
    torch.manual_seed(0)
    parity = {int(i) % 2 for _ in range(5) for i in pixel_subset(64, 2)}
    assert parity == {0, 1}  # not a regular grid: pixels of every transposed-conv tap


def test_clustering_separates_groups():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:3]
    ids = torch.randperm(300, generator=g) % 3
    x = centres[ids] + 0.1 * torch.randn(300, 4, generator=g)
    masks, scores = RecurrentMeanShiftClustering(bandwidth=0.2, num_iters=8, min_pixels=5,
                                                 max_points=128)(3.0 * x)
    assert scores is None and masks.shape == (3, 300)
    truth = torch.stack([ids == k for k in range(3)])
    matched = (masks[:, None] == truth[None]).all(-1)
    assert matched.any(1).all() and matched.any(0).all()


def test_clustering_empty_and_min_pixels():
    masks, _ = RecurrentMeanShiftClustering()(torch.zeros(0, 4))
    assert masks.shape == (0, 0)
    x = torch.cat([torch.tensor([[1.0, 0, 0]]).repeat(20, 1), torch.tensor([[0, 1.0, 0]])])
    masks, _ = RecurrentMeanShiftClustering(min_pixels=2)(x)
    assert masks.shape == (1, 21) and masks[0, :20].all() and not masks[0, 20]
