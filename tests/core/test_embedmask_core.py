"""EmbedMask maths: probabilities by hand, the margin prior and scales, coordinates, logits, the
first-max-IoU sampling (by hand and brute force), mask targets, the loss region, the mask loss
against the Lovasz reference, the test-time log-probability maps (brute force) and their
resizing."""
import math

import pytest
import torch

from insplug.core.embedmask.embedding import (OUTSIDE_LOG_PROB, box_crop_region, box_iou_plus1,
                                              box_log_prob, coordinate_embedding,
                                              embed_mask_loss, embedding_distance,
                                              log_prob_to_masks, margin_bias, margins_from_logits,
                                              mask_logits, mask_probability, mask_targets,
                                              resized_mask_size, sample_first_max_iou)
from insplug.core.losses.lovasz import lovasz_hinge_flat


def test_probability_by_hand_and_prior_margin():
    pixel = torch.zeros(3, 1, 2)
    pixel[:, 0, 1] = torch.tensor([1.0, 2.0, 2.0])  # distance^2 3^2 = 9 from the origin
    q = torch.zeros(2, 3)
    q[1] = torch.tensor([1.0, 2.0, 2.0])
    s = torch.tensor([0.5, 2.0])
    p = mask_probability(pixel, q, s)
    assert torch.allclose(p[0, 0], torch.tensor([1.0, math.exp(-4.5)]))
    assert torch.allclose(p[1, 0], torch.tensor([math.exp(-18.0), 1.0]))
    # per-dimension margins weight each squared difference: 1*1 + 0*4 + 0.5*4
    sd = torch.tensor([[1.0, 0.0, 0.5]])
    assert torch.allclose(embedding_distance(pixel, q[:1], sd)[0, 0, 1], torch.tensor(3.0))
    # the initial margin exp(bias) puts probability 0.5 at distance prior_margin
    m = math.exp(margin_bias(2.0))
    at_prior = mask_probability(torch.tensor([[[2.0]]]), torch.zeros(1, 1), torch.tensor([m]))
    assert float(at_prior) == pytest.approx(0.5)
    # the official bias, log(-log(0.5) / prior^2)
    assert margin_bias(2.0) == pytest.approx(math.log(-math.log(0.5) / 4.0))


def test_margins_scale_only_the_spatial_channels():
    raw = torch.tensor([1.0, -1.0, 0.5, 2.0]).view(1, 4, 1, 1)
    out = margins_from_logits(raw, torch.tensor(3.0))
    assert torch.allclose(out.flatten(), torch.exp(torch.tensor([3.0, -3.0, 0.5, 2.0])))
    assert torch.allclose(margins_from_logits(raw[:, :1]).flatten(), torch.tensor([math.e]))


def test_coordinate_embedding_is_the_fcos_point_grid():
    c = coordinate_embedding(2, 3, 8, torch.tensor(2.0), torch.zeros(1))
    assert c.shape == (1, 2, 2, 3)
    assert torch.allclose(c[0, 0, 1], torch.tensor([4.0, 12.0, 20.0]) * 2 / 100)
    assert torch.allclose(c[0, 1, :, 0], torch.tensor([4.0, 12.0]) * 2 / 100)


def test_logits_invert_probabilities():
    v = torch.tensor([1e-3, 0.1, math.log(2.0), 3.0, 50.0], dtype=torch.float64)
    p = torch.exp(-v).clamp(1e-9, 1 - 1e-9)
    assert torch.allclose(mask_logits(v), torch.log(p) - torch.log1p(-p), atol=1e-6)


def test_iou_has_plus_one_areas():
    a = torch.tensor([[0.0, 0, 9, 9]])    # 10 x 10 pixels
    b = torch.tensor([[5.0, 0, 14, 9]])   # overlap 5 x 10
    assert float(box_iou_plus1(a, b)) == pytest.approx(50 / 150)


def test_first_max_iou_sampling_by_hand():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = torch.tensor([[0.0, 0, 5, 5],      # obj 0, low
                         [0, 0, 10, 10],      # obj 0, IoU 1 (first max)
                         [0, 0, 10, 10],      # obj 0, IoU 1 again: not taken (not first)
                         [20, 20, 25, 25],    # obj 1, its best
                         [20, 20, 22, 22]])
    index = torch.tensor([0, 0, 0, 1, 1])
    assert sample_first_max_iou(pred, gt, index, 3).tolist() == [1, 3, -1]
    empty = sample_first_max_iou(pred[:0], gt, index[:0], 3)
    assert empty.tolist() == [-1, -1, -1]


def test_first_max_iou_sampling_brute_force():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        g = 4
        gt = torch.rand(g, 2, generator=gen) * 50
        gt = torch.cat([gt, gt + 5 + torch.rand(g, 2, generator=gen) * 30], 1)
        p = 30
        index = torch.randint(0, g - 1, (p,), generator=gen)  # object g-1 gets none
        pred = gt[index] + torch.randint(-3, 4, (p, 4), generator=gen).float()
        got = sample_first_max_iou(pred, gt, index, g)
        for o in range(g):
            rows = (index == o).nonzero().flatten().tolist()
            if not rows:
                assert got[o] == -1
                continue
            ious = [float(box_iou_plus1(pred[r:r + 1], gt[o:o + 1])) for r in rows]
            assert got[o] == rows[ious.index(max(ious))]


def test_mask_targets_bilinear_then_positive():
    masks = torch.zeros(2, 6, 7, dtype=torch.uint8)
    masks[0, 0, 0] = 1   # sampled by no output cell (factor 4 samples pixels 1-2, 5-6)
    masks[1, 2, 1] = 1   # inside the 2x2 footprint of cell (0, 0)
    out = mask_targets(masks, 8, 8, 2, 2)
    assert out.dtype == torch.bool and out.shape == (2, 2, 2)
    assert not out[0].any()
    assert out[1].tolist() == [[True, False], [False, False]]


def test_box_crop_region_by_hand():
    # box x 2..4, y 1..2, padding 0.5 -> x [2 - 1 - 1, 4 + 1 + 1) = [0, 6) clipped to < 5,
    # y [1 - 0.5 - 1, 2 + 0.5 + 1) = [0, 3.5)
    r = box_crop_region(torch.tensor([[2.0, 1.0, 4.0, 2.0]]), 5, 6, 0.5)
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[0:4, 0:5] = True
    assert torch.equal(r[0], expected)


def test_mask_loss_is_lovasz_of_logits():
    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(3, 4, 4, generator=gen, dtype=torch.float64) * 3
    target = (torch.rand(3, 4, 4, generator=gen) > 0.5).double()
    valid = torch.zeros(3, 4, 4, dtype=torch.bool)
    valid[:, 1:3, :] = True
    image = torch.tensor([0, 0, 1])
    per = [float(lovasz_hinge_flat(mask_logits(dist[i]).flatten(), target[i].flatten()))
           for i in range(3)]
    # mean over the objects of an image, summed over images, / number of images (3: one empty)
    assert float(embed_mask_loss(dist, target, None, image, 3)) == pytest.approx(
        ((per[0] + per[1]) / 2 + per[2]) / 3)
    per_v = [float(lovasz_hinge_flat(mask_logits(dist[i])[valid[i]], target[i][valid[i]]))
             for i in range(3)]
    assert float(embed_mask_loss(dist, target, valid, image, 2)) == pytest.approx(
        ((per_v[0] + per_v[1]) / 2 + per_v[2]) / 2)
    assert float(embed_mask_loss(dist[:0], target[:0], None, image[:0], 2)) == 0.0


def test_box_log_prob_brute_force():
    gen = torch.Generator().manual_seed(1)
    d, h, w = 5, 9, 11
    pixel = torch.randn(d, h, w, generator=gen, dtype=torch.float64)
    q = torch.randn(4, d, generator=gen, dtype=torch.float64)
    m = torch.rand(4, d, generator=gen, dtype=torch.float64)
    boxes = torch.tensor([[0.2, 0.9, 3.7, 2.1], [5.5, 4.0, 10.9, 8.9], [3.0, 3.0, 3.0, 3.0],
                          [9.9, 0.0, 11.0, 1.5]], dtype=torch.float64)
    got = box_log_prob(pixel, q, m, boxes)
    full = -embedding_distance(pixel, q, m)
    for n, b in enumerate(boxes.int().tolist()):
        x1, y1 = max(b[0] - 2, 0), max(b[1] - 2, 0)
        x2, y2 = min(b[2] + 2, w), min(b[3] + 2, h)
        want = torch.full((h, w), OUTSIDE_LOG_PROB, dtype=torch.float64)
        want[y1:y2, x1:x2] = full[n, y1:y2, x1:x2]
        assert torch.allclose(got[n], want), n
    assert box_log_prob(pixel, q[:0], m[:0], boxes[:0]).shape == (0, h, w)


def test_resize_once_and_threshold_at_log():
    # size: ceil(grid * stride * out / in) computed in float32
    assert resized_mask_size(16, 20, 4.0, 90, 113, 60, 75) == (96, 121)
    logp = torch.full((1, 2, 2), -10.0)
    logp[0, 0, 0] = math.log(0.6)
    masks = log_prob_to_masks(logp, (2, 2), 2, 3, 0.53)
    assert masks.shape == (1, 2, 3)
    assert masks[0].tolist() == [[True, False, False], [False, False, False]]
    # just below the threshold probability is background
    logp[0, 0, 0] = math.log(0.52)
    assert not log_prob_to_masks(logp, (2, 2), 2, 2, 0.53).any()
