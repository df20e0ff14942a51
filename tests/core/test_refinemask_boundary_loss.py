"""RefineMask boundary bands, band resizing, the BAR loss and the test-time merge, against
hand-worked small cases and brute-force references written independently here."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insplug.core.refinemask import (boundary_band, merge_stage_logits, refine_stage_logits,
                                     refinement_band, refinement_loss, refinement_losses,
                                     resize_binary, semantic_loss, semantic_target)


def brute_force_band(mask, width):
    """Per-pixel loops: more than 10 % of the window on the other side (outside = background)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    k2 = (2 * width + 1) ** 2
    out = np.zeros_like(mask)
    for y, x in itertools.product(range(h), range(w)):
        other = 0
        for dy, dx in itertools.product(range(-width, width + 1), repeat=2):
            yy, xx = y + dy, x + dx
            inside = 0 <= yy < h and 0 <= xx < w
            value = mask[yy, xx] if inside else False
            other += value != mask[y, x]
        out[y, x] = other > 0.1 * k2
    return out


def test_band_width1_hand_worked_square():
    # a 3x3 square in a 7x7 image: with width 1 every pixel touching the other side (8-neigh.)
    mask = torch.zeros(1, 7, 7, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    band = boundary_band(mask, 1)[0]
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[1:6, 1:6] = True          # ring of background around the square + its own border
    expected[3, 3] = False             # the centre has no background neighbour
    assert torch.equal(band, expected)


def test_band_width2_needs_three_opposite_pixels():
    # a single foreground pixel: its 24 neighbours are background (>2.5) -> on the band; every
    # background pixel sees only 1 foreground pixel in its 5x5 window (not > 2.5) -> off
    mask = torch.zeros(1, 9, 9, dtype=torch.bool)
    mask[0, 4, 4] = True
    band = boundary_band(mask, 2)[0]
    assert band.sum() == 1 and band[4, 4]
    # a half-plane (columns >= 4 foreground): a pixel is on the band iff its 5x5 window holds
    # >= 3 pixels of the other side: columns 2..5 around the edge, and columns 7, 8 whose
    # windows reach past the right image border (outside counts as background); column 6 not
    mask = torch.zeros(1, 9, 9, dtype=torch.bool)
    mask[0, :, 4:] = True
    band = boundary_band(mask, 2)[0]
    for col in range(9):
        assert bool(band[4, col]) == (col in (2, 3, 4, 5, 7, 8)), col


def test_band_image_border_counts_as_background():
    mask = torch.ones(1, 6, 6, dtype=torch.bool)
    band = boundary_band(mask, 1)[0]
    expected = torch.ones(6, 6, dtype=torch.bool)
    expected[1:5, 1:5] = False
    assert torch.equal(band, expected)


@pytest.mark.parametrize('width', [1, 2, 3])
def test_band_matches_brute_force_on_random_masks(width):
    gen = torch.Generator().manual_seed(width)
    masks = torch.rand(3, 11, 13, generator=gen) > 0.55
    band = boundary_band(masks, width)
    for i in range(3):
        assert np.array_equal(band[i].numpy(), brute_force_band(masks[i].numpy(), width))


def test_band_accepts_float_masks_and_rejects_bad_input():
    masks = torch.zeros(2, 5, 5)
    masks[:, 1:4, 1:4] = 1.0
    assert torch.equal(boundary_band(masks, 1), boundary_band(masks > 0.5, 1))
    with pytest.raises(ValueError, match='width'):
        boundary_band(masks, 0)
    with pytest.raises(ValueError, match='N, H, W'):
        boundary_band(masks[0], 1)
    assert boundary_band(torch.zeros(0, 5, 5, dtype=torch.bool), 2).shape == (0, 5, 5)


def test_resize_binary_is_bilinear_corner_aligned_then_half():
    band = torch.zeros(1, 2, 2, dtype=torch.bool)
    band[0, 0, 0] = True
    up = resize_binary(band, 4)[0]
    # corner-aligned bilinear of a one-hot corner on a 4x4 grid: value (1 - y/3)(1 - x/3)
    expected = torch.tensor([[(1 - y / 3) * (1 - x / 3) >= 0.5 for x in range(4)]
                             for y in range(4)])
    assert torch.equal(up, expected)
    assert up.sum() == 3  # (0,0), (0,1), (1,0)


def test_refinement_band_is_union_of_prediction_and_target_bands():
    pred = torch.zeros(1, 6, 6, dtype=torch.bool)
    pred[0, 0:3, 0:3] = True
    target = torch.zeros(1, 6, 6)
    target[0, 3:6, 3:6] = 1
    band = refinement_band(pred, target, 6, 1)
    assert torch.equal(band, boundary_band(pred, 1) | boundary_band(target, 1))
    assert band.shape == (1, 6, 6)


def bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_bar_loss_hand_computed_two_stage_case():
    """Stage 0 (2x2, start_stage=0): full BCE. Stage 1 (4x4): BCE only on the band.

    Stage 0 predicts only the top-left pixel; the target of stage 0 is the whole top row. With
    width 1 every pixel of a 2x2 map is on the band of any non-constant mask, so the band of
    stage 1 is the resize of an all-True map: every pixel of the 4x4 stage is supervised.
    """
    l0 = torch.tensor([[[2.0, -2.0], [-2.0, -2.0]]])
    t0 = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    l1 = torch.full((1, 4, 4), 0.5)
    t1 = torch.zeros(1, 4, 4)
    t1[0, :2] = 1
    losses = refinement_losses([l0, l1], [t0, t1], boundary_width=1, start_stage=0)
    full0 = (bce(2, 1) + bce(-2, 1) + 2 * bce(-2, 0)) / 4
    full1 = (8 * bce(0.5, 1) + 8 * bce(0.5, 0)) / 16
    assert losses[0].item() == pytest.approx(full0, rel=1e-6)
    assert losses[1].item() == pytest.approx(full1, rel=1e-6)
    total = refinement_loss([l0, l1], [t0, t1], [0.25, 1.0], boundary_width=1, start_stage=0)
    assert total.item() == pytest.approx(0.25 * full0 + full1, rel=1e-6)


def test_bar_loss_ignores_pixels_far_from_boundaries():
    """Stage 0/1 on 8x8 and 16x16 with start_stage=0 and a big square at stage 0: pixels far
    from both the predicted and the target contour get no loss, whatever their logits."""
    t0 = torch.zeros(1, 8, 8)
    t0[0, 2:6, 2:6] = 1
    l0 = (t0 * 2 - 1) * 5  # confident and correct
    t1 = F.interpolate(t0[None], size=(16, 16), mode='nearest')[0]
    l1 = (t1 * 2 - 1) * 3
    base = refinement_losses([l0, l1], [t0, t1], boundary_width=1, start_stage=0)[1]
    region = resize_binary(boundary_band(t0 > 0.5, 1), 16)[0]
    assert region.any() and not region.all()
    far = ~region
    l1_bad = l1.clone()
    l1_bad[0][far] = -l1_bad[0][far] * 10  # ruin every pixel off the band
    bad = refinement_losses([l0, l1_bad], [t0, t1], boundary_width=1, start_stage=0)[1]
    assert bad.item() == pytest.approx(base.item(), rel=1e-6)
    l1_bad[0][region] = -l1_bad[0][region]  # ruin the band: now the loss grows
    worse = refinement_losses([l0, l1_bad], [t0, t1], boundary_width=1, start_stage=0)[1]
    assert worse.item() > base.item() + 1
    # the band loss is the mean BCE over exactly the band pixels
    manual = F.binary_cross_entropy_with_logits(l1[0][region], t1[0][region])
    assert base.item() == pytest.approx(manual.item(), rel=1e-6)


def test_bar_loss_official_schedule_four_stages():
    """Stages 0 and 1 (start_stage=1) are full BCE, stages 2 and 3 are band-restricted."""
    gen = torch.Generator().manual_seed(0)
    sizes = [14, 28, 56, 112]
    obj = torch.zeros(2, 1, 112, 112)
    obj[0, 0, 20:90, 30:100] = 1
    obj[1, 0, 40:112, 0:60] = 1
    targets = [(F.interpolate(obj, size=(s, s), mode='area') >= 0.5).float()[:, 0]
               for s in sizes]
    logits = [torch.randn(2, s, s, generator=gen, requires_grad=True) for s in sizes]
    losses = refinement_losses(logits, targets, boundary_width=2, start_stage=1)
    for k in (0, 1):
        expected = F.binary_cross_entropy_with_logits(logits[k], targets[k])
        assert losses[k].item() == pytest.approx(expected.item(), rel=1e-6)
    # stage 2: band of stage-1 prediction and target (stage 1 predicts its own binary map)
    prev = logits[1].detach() >= 0
    region = refinement_band(prev, targets[1], 56, 2)
    expected = F.binary_cross_entropy_with_logits(logits[2][region], targets[2][region])
    assert losses[2].item() == pytest.approx(expected.item(), rel=1e-6)
    # stage 3: the carried prediction is the merge of stages 1 and 2, as at test time
    carried = merge_stage_logits(logits[1].detach(), logits[2].detach(), prev) >= 0
    region = refinement_band(carried, targets[2], 112, 2)
    expected = F.binary_cross_entropy_with_logits(logits[3][region], targets[3][region])
    assert losses[3].item() == pytest.approx(expected.item(), rel=1e-6)
    total = refinement_loss(logits, targets, [0.25, 0.5, 0.75, 1.0], 2, 1)
    total.backward()
    assert all(l.grad is not None and l.grad.abs().sum() > 0 for l in logits)


def test_bar_loss_without_rois_is_zero_with_graph_and_checks_lengths():
    logits = [torch.zeros(0, s, s, requires_grad=True) for s in (14, 28)]
    targets = [torch.zeros(0, s, s) for s in (14, 28)]
    total = refinement_loss(logits, targets, [0.5, 1.0])
    assert total.item() == 0
    total.backward()
    with pytest.raises(ValueError, match='stage_instance_loss_weight'):
        refinement_loss(logits, targets, [1.0])
    with pytest.raises(ValueError, match='differ'):
        refinement_losses([torch.zeros(1, 4, 4)], [torch.zeros(1, 5, 5)])


def test_merge_keeps_coarse_logits_off_the_boundary():
    prev_logits = torch.full((1, 4, 4), -3.0)
    prev_logits[0, 1:3, 1:3] = 3.0
    cur = torch.full((1, 8, 8), 7.0)
    merged = merge_stage_logits(prev_logits, cur, prev_logits >= 0)
    refine = resize_binary(boundary_band(prev_logits >= 0, 1), 8)[0]
    coarse = F.interpolate(prev_logits[None], size=(8, 8), mode='bilinear',
                           align_corners=True)[0, 0]
    assert torch.equal(merged[0][refine], cur[0][refine])
    assert torch.equal(merged[0][~refine], coarse[~refine])
    # a constant previous mask has no boundary: nothing is refined
    flat = merge_stage_logits(torch.full((1, 4, 4), -1.0), cur, torch.zeros(1, 4, 4, dtype=bool))
    assert torch.allclose(flat, torch.full((1, 8, 8), -1.0))


def test_refine_stage_logits_starts_at_stage_one_and_chains():
    gen = torch.Generator().manual_seed(1)
    logits = [torch.randn(2, s, s, generator=gen) for s in (14, 28, 56, 112)]
    out = refine_stage_logits(logits, first_stage=1)
    step = merge_stage_logits(logits[1], logits[2], logits[1] >= 0)
    expected = merge_stage_logits(step, logits[3], step >= 0)
    assert torch.equal(out, expected)
    logits[0].fill_(100.0)  # stage 0 does not take part
    assert torch.equal(refine_stage_logits(logits, 1), out)


def test_semantic_target_union_padding_and_empty_images():
    a = torch.zeros(2, 10, 12, dtype=torch.bool)
    a[0, 0:4, 0:4] = True
    a[1, 4:8, 8:12] = True
    b = torch.zeros(0, 6, 6, dtype=torch.bool)  # image without instances, smaller than the pad
    target = semantic_target([a, b], (4, 4), stride=4)  # padded input 16 x 16
    assert target.shape == (2, 4, 4)
    assert target[1].sum() == 0
    expected = torch.zeros(4, 4)
    expected[0, 0] = 1   # top-left 4x4 block is fully covered
    expected[1, 2] = 1   # rows 4..7, cols 8..11
    assert torch.equal(target[0], expected)


def test_semantic_loss_is_mean_bce():
    logits = torch.tensor([[[0.0, 2.0]]])
    target = torch.tensor([[[1.0, 0.0]]])
    expected = (bce(0.0, 1) + bce(2.0, 0)) / 2
    assert semantic_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
