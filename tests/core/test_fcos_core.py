"""insplug.core.fcos: hand-worked checks of the official FCOS maths (the golden comparison with
AdelaiDet is tests/parity/test_fcos_adelaidet_parity.py)."""
import math

import pytest
import torch

from insplug.core.fcos import (INF, centerness_targets, decode_ltrb, fcos_ious, fcos_locations,
                               fcos_losses, fcos_predict_single, fcos_targets, final_scores,
                               iou_loss, level_point_info, nms_kthvalue,
                               regress_ranges_from_sizes, rescale_clip_boxes, select_candidates)


def test_locations_and_ranges():
    locs = fcos_locations([(2, 3)], [8])
    assert locs[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert regress_ranges_from_sizes([64, 128]) == [(-1, 64), (64, 128), (128, INF)]


def test_iou_plus_one_smoothing_hand_worked():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])    # 2 x 2 box
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])  # 4 x 4 box around the same point
    ious, gious = fcos_ious(pred, target)
    # I = 4, U = 16: (4 + 1) / (16 + 1); enclosing box = target, so giou = iou
    assert ious.item() == pytest.approx(5 / 17)
    assert gious.item() == pytest.approx(5 / 17)
    assert fcos_ious(pred, target, smooth=0.0)[0].item() == pytest.approx(4 / 16)
    # disjoint-ish: pred entirely to the left -> intersection width may be negative
    assert iou_loss(ious, gious, 'giou').item() == pytest.approx(1 - 5 / 17)
    assert iou_loss(ious, gious, 'iou', torch.tensor([2.0])).item() == \
        pytest.approx(-2 * math.log(5 / 17))
    with pytest.raises(ValueError):
        iou_loss(ious, gious, 'diou')


def test_targets_smallest_box_wins_and_centre_sampling():
    points = torch.tensor([[20.0, 20.0], [5.0, 5.0], [60.0, 60.0]])
    strides = torch.full((3,), 8.0)
    ranges = torch.tensor([[-1.0, INF]] * 3)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 30.0, 30.0]])
    labels, reg, inds = fcos_targets(points, strides, ranges, boxes, torch.tensor([0, 1]), 2,
                                     center_sample_radius=1.5)
    # (20, 20): inside both centre regions -> smaller box 1; (5, 5): outside box 0's centre
    # square [8, 32]; (60, 60): outside everything
    assert inds.tolist() == [1, -1, -1] and labels.tolist() == [1, 2, 2]
    assert reg[0].tolist() == [10, 10, 10, 10]
    _, _, inds = fcos_targets(points, strides, ranges, boxes, torch.tensor([0, 1]), 2,
                              center_sample_radius=0)
    assert inds.tolist() == [1, 0, -1]  # whole box without centre sampling


def test_centerness_target():
    assert centerness_targets(torch.tensor([[2.0, 5.0, 8.0, 5.0]])).item() == \
        pytest.approx(math.sqrt(2 / 8))


def test_losses_normalisers_hand_worked():
    k = 2
    logits = torch.zeros(3, k)
    labels = torch.tensor([0, 2, 1])
    reg_t = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1.0, 1, 3, 1]])
    reg_p = reg_t.clone()
    ctr = torch.zeros(3)
    losses, extras = fcos_losses(logits, reg_p, ctr, labels, reg_t, k)
    # focal at p = 0.5: positive term 0.25 * log2 * 0.25, negative term 0.75 * log2 * 0.25
    pos, neg = 0.25 * math.log(2) * 0.25, 0.75 * math.log(2) * 0.25
    assert losses['loss_cls'].item() == pytest.approx((2 * pos + 4 * neg) / 2)
    assert losses['loss_bbox'].item() == pytest.approx(0.0, abs=1e-7)  # perfect boxes
    ct = torch.tensor([1.0, math.sqrt(1 / 3)])
    assert torch.allclose(extras['ctr_targets'], ct)
    assert extras['loss_denorm'].item() == pytest.approx(ct.sum().item())
    bce = -(ct * math.log(0.5) + (1 - ct) * math.log(0.5)).sum() / 2
    assert losses['loss_centerness'].item() == pytest.approx(bce.item())


def test_candidates_thresh_with_ctr_and_point_topk():
    cls = torch.tensor([[0.6, 0.1], [0.3, 0.04]])
    ctr = torch.tensor([0.1, 0.9])
    # threshold on cls: (0,0) 0.6, (0,1) 0.1, (1,0) 0.3 pass; products 0.06, 0.01, 0.27
    p, l, s = select_candidates(cls, ctr, 0.05, 10, thresh_with_ctr=False)
    assert sorted(zip(p.tolist(), l.tolist())) == [(0, 0), (0, 1), (1, 0)]
    # threshold on cls * ctr: 0.06 and 0.27 pass
    p, l, s = select_candidates(cls, ctr, 0.05, 10, thresh_with_ctr=True)
    assert sorted(zip(p.tolist(), l.tolist())) == [(0, 0), (1, 0)]
    # top-1 of the candidates by cls * ctr
    p, l, s = select_candidates(cls, ctr, 0.05, 1, thresh_with_ctr=False)
    assert (p.tolist(), l.tolist()) == ([1], [0]) and s.item() == pytest.approx(0.27)
    # point_topk: best point by max cls*ctr is point 1, then cls > thr
    p, l, s = select_candidates(cls, ctr, 0.05, 1, candidate_mode='point_topk')
    assert (p.tolist(), l.tolist()) == ([1], [0])
    assert final_scores(torch.tensor([0.25]), score='sqrt').item() == pytest.approx(0.5)
    assert final_scores(torch.tensor([0.25]), score='product').item() == 0.25


def test_nms_kthvalue_keeps_ties():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                          [0.5, 0.5, 10, 10]])
    scores = torch.tensor([0.9, 0.5, 0.5, 0.8])
    labels = torch.tensor([0, 0, 0, 0])
    keep = nms_kthvalue(boxes, scores, labels, 0.6, 2)
    # box 3 suppressed by box 0; 2nd largest is 0.5 and both 0.5 are kept (detectron2 rule)
    assert sorted(keep.tolist()) == [0, 1, 2]
    keep = nms_kthvalue(boxes, scores, torch.tensor([0, 0, 0, 1]), 0.6, -1)
    assert sorted(keep.tolist()) == [0, 1, 2, 3]  # class-aware


def test_predict_single_and_paste_time_clipping():
    cls = [torch.full((2, 1), 3.0)]
    reg = [torch.tensor([[4.0, 4, 100, 4], [1.0, 1, 1, 1]])]
    ctr = [torch.zeros(2)]
    pts = [torch.tensor([[4.0, 4.0], [40.0, 40.0]])]
    det = fcos_predict_single(cls, reg, ctr, pts, score_thr=0.05)
    assert det['bboxes'][0].tolist() == [0, 0, 104, 8]  # not clipped
    p = torch.sigmoid(torch.tensor(3.0)) * 0.5
    assert det['scores'][0].item() == pytest.approx(p.sqrt().item())
    det = fcos_predict_single(cls, reg, ctr, pts, score_thr=0.05, clip_hw=(50, 50))
    assert det['bboxes'][0].tolist() == [0, 0, 49, 8]
    boxes, keep = rescale_clip_boxes(torch.tensor([[-2.0, 1, 30, 10], [60, 1, 70, 4]]),
                                     (2.0, 2.0), (40, 100))
    assert boxes.tolist() == [[0, 2, 60, 20], [100, 2, 100, 8]] and keep.tolist() == [True, False]
    assert decode_ltrb(torch.tensor([[5.0, 5.0]]), torch.tensor([[1.0, 2, 3, 4]])).tolist() == \
        [[4, 3, 8, 9]]
    pts, pstr, rng = level_point_info([torch.zeros(2, 2), torch.zeros(1, 2)], [8, 16],
                                      [(-1, 64), (64, INF)])
    assert pstr.tolist() == [8, 8, 16] and rng[2].tolist() == [64, INF]
