"""CenterMask pieces on hand-built inputs: SAG spatial attention, adaptive RoI levels, RoI mask
targets and pasting, the MaskIoU target of hand-drawn masks, and the heads' shapes."""
import pytest
import torch
from torch import nn

from insplug.core.centermask.heads import (MaskIoUHead, SAGMaskHead, gather_class, mask_loss,
                                           spatial_attention)
from insplug.core.centermask.roi import (adaptive_roi_levels, mask_targets, match_proposals,
                                         multilevel_roi_align, paste_masks)
from insplug.core.losses.mask_iou import mask_iou_targets


def test_spatial_attention_by_hand():
    x = torch.zeros(1, 2, 1, 2)
    x[0, :, 0, 0] = torch.tensor([1.0, 3.0])   # mean 2, max 3
    x[0, :, 0, 1] = torch.tensor([-2.0, 0.0])  # mean -1, max 0
    conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0   # avg channel, centre tap
        conv.weight[0, 1, 1, 1] = -0.5  # max channel, centre tap
    gate = torch.sigmoid(torch.tensor([2.0 - 1.5, -1.0 - 0.0]))
    expected = x * gate.view(1, 1, 1, 2)
    assert torch.allclose(spatial_attention(x, conv), expected)


def test_adaptive_levels_follow_eq2():
    # image 512 x 512; box area = image / 2^j -> level ceil(5 - j) clamped to [3, 5], minus 3
    j = torch.tensor([0.0, 0.5, 1.5, 2.5, 6.0, 12.0])
    expected = [2, 2, 1, 0, 0, 0]  # ceil: 5, 5, 4, 3, -1 -> 3, -7 -> 3
    image_area = torch.full((6,), 512.0 * 512.0)
    sides = 512.0 / 2 ** (j / 2)
    boxes = torch.stack([torch.zeros(6), torch.zeros(6), sides, sides], 1)
    assert adaptive_roi_levels(boxes, image_area, 3, 5).tolist() == expected
    # the same relative size in a smaller image maps to the same level
    assert adaptive_roi_levels(boxes / 2, image_area / 4, 3, 5).tolist() == expected


def test_mask_targets_paste_round_trip_and_roi_align_levels():
    gt = torch.zeros(2, 64, 64)
    gt[0, 10:30, 20:50] = 1
    gt[1, 40:60, 5:25] = 1
    boxes = torch.tensor([[20.0, 10.0, 50.0, 30.0], [5.0, 40.0, 25.0, 60.0]])
    t = mask_targets(gt, torch.tensor([0, 1]), boxes, 28)
    assert t.shape == (2, 28, 28) and bool((t == 1).all())  # the box is the object
    pasted = paste_masks(t, boxes, 64, 64) >= 0.5
    iou = (pasted & gt.bool()).flatten(1).sum(1) / (pasted | gt.bool()).flatten(1).sum(1)
    assert (iou > 0.95).all()
    feats = [torch.arange(16.0).view(1, 1, 4, 4).expand(1, 1, 4, 4).contiguous() * (k + 1)
             for k in range(2)]
    rois = torch.tensor([[0, 0.0, 0.0, 8.0, 8.0], [0, 0.0, 0.0, 16.0, 16.0]])
    out = multilevel_roi_align(feats, rois, torch.tensor([0, 1]), [8, 4], 1)
    # RoI 1 goes to level 1 (stride 4, map values x2): its single bin covers the whole 4 x 4
    # map and samples the 16 cell centres, so it is twice the mean 7.5
    assert out.shape == (2, 1, 1, 1)
    assert float(out[1]) == pytest.approx(2 * 7.5)


def test_mask_iou_target_on_hand_built_masks():
    pred = torch.zeros(2, 4, 4)
    gt = torch.zeros(2, 4, 4)
    pred[0, :2, :] = 0.9   # 8 px predicted
    gt[0, :, :2] = 1       # 8 px GT, overlap 4 -> IoU 4 / 12
    pred[1, :2, :2] = 0.7
    gt[1, :2, :2] = 1      # identical -> 1
    iou = mask_iou_targets(pred, gt, threshold=0.5)
    assert torch.allclose(iou, torch.tensor([4 / 12, 1.0]))


def test_match_and_heads_shapes_and_mask_loss():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    props = torch.tensor([[0.0, 0, 10, 11], [20, 20, 30, 30], [50, 50, 60, 60]])
    assert match_proposals(props, gt).tolist() == [0, -1, -1]  # IoU 0.25 is background
    assert match_proposals(props, gt[:0]).tolist() == [-1, -1, -1]
    head = SAGMaskHead(8, 8, 2, num_classes=3)
    logits = head(torch.randn(4, 8, 14, 14))
    assert logits.shape == (4, 3, 28, 28)
    iou = MaskIoUHead(8, 8, 4, 32, 14, num_classes=3)(torch.randn(4, 8, 14, 14),
                                                      torch.rand(4, 1, 28, 28))
    assert iou.shape == (4, 3)
    labels = torch.tensor([0, 2, 1, 2])
    sel = gather_class(logits, labels)
    assert torch.equal(sel[1], logits[1, 2])
    targets = (torch.rand(4, 28, 28) > 0.5).float()
    ref = torch.nn.functional.binary_cross_entropy_with_logits(sel, targets)
    assert torch.allclose(mask_loss(logits, labels, targets), ref)
    assert float(mask_loss(logits[:0], labels[:0], targets[:0])) == 0.0


def test_centermask2_maskiou_target_counts_the_whole_object():
    from insplug.core.centermask.maskiou import maskiou_targets
    # 4 x 4 RoI grid; GT covers the left half (8 px in the RoI) and half of the object lies
    # outside the RoI (ratio 0.5): the whole object is 16 px in RoI-grid units.
    gt = torch.zeros(2, 4, 4)
    gt[:, :, :2] = 1
    logits = torch.full((2, 4, 4), -1.0)
    logits[0, :, :2] = 2.0          # predicts exactly the visible part: 8 / (8 + 16 - 8) = 0.5
    logits[1, :2, :] = 2.0          # 8 px, overlap 4: 4 / (8 + 16 - 4) = 0.2
    t = maskiou_targets(logits, gt, torch.tensor([0.5, 0.5]))
    assert torch.allclose(t, torch.tensor([0.5, 0.2], dtype=torch.float64))
    # ratio 1: the plain IoU inside the RoI; empty prediction and GT: union clamped to 1 -> 0
    t = maskiou_targets(logits[1:], gt[1:], torch.tensor([1.0]))
    assert torch.allclose(t, torch.tensor([4 / 12], dtype=torch.float64))
    assert float(maskiou_targets(torch.full((1, 4, 4), -1.0), torch.zeros(1, 4, 4),
                                 torch.tensor([0.0]))) == 0.0


def test_centermask2_maskiou_loss_normaliser():
    from insplug.core.centermask.maskiou import maskiou_loss
    pred = torch.tensor([0.9, 0.1, 0.5], requires_grad=True)
    target = torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64)
    # only targets > 0 count, each 0.5 (p - t)^2, divided by their number (2)
    expected = (0.5 * 0.4 ** 2 + 0.5 * 0.25 ** 2) / 2
    loss = maskiou_loss(pred, target, weight=2.0)
    assert float(loss) == pytest.approx(2.0 * expected)
    loss.backward()
    assert float(pred.grad[1]) == 0.0
    zero = maskiou_loss(pred, torch.zeros(3, dtype=torch.float64))
    assert float(zero) == 0.0 and zero.requires_grad


def test_area_ratios_bitmap_and_polygon():
    import numpy as np

    from insplug.core.centermask.maskiou import bitmap_area_ratios, polygon_area_ratios
    gt = torch.zeros(1, 10, 10, dtype=torch.bool)
    gt[0, 2:6, 2:8] = True                                   # 24 px
    boxes = torch.tensor([[0.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    r = bitmap_area_ratios(gt, torch.tensor([0, 0]), boxes)  # columns 2-4 inside: 12 px
    assert torch.allclose(r, torch.tensor([0.5, 1.0], dtype=torch.float64))
    # a 6 x 4 rectangle polygon; the box keeps its left half
    poly = [[np.array([2.0, 2.0, 8.0, 2.0, 8.0, 6.0, 2.0, 6.0])]] * 2
    r = polygon_area_ratios(poly, boxes)
    assert torch.allclose(r, torch.tensor([0.5, 1.0], dtype=torch.float64))


def test_clip_nonempty():
    from insplug.core.centermask.roi import clip_nonempty
    boxes = torch.tensor([[-5.0, 2.0, 30.0, 50.0], [25.0, 5.0, 40.0, 9.0], [3.0, 3.0, 3.0, 8.0]])
    clipped, keep = clip_nonempty(boxes, height=40, width=20)
    assert clipped.tolist() == [[0.0, 2.0, 20.0, 40.0], [20.0, 5.0, 20.0, 9.0],
                                [3.0, 3.0, 3.0, 8.0]]
    assert keep.tolist() == [True, False, False]
