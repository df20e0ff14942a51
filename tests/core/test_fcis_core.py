"""FCIS core (insplug.core.fcis): hand-worked channel operations, losses and mask voting, and
mask targets against ``cv2.resize`` run per RoI (the release's ``intersect_box_mask`` path)."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from insplug.core.fcis import (fcis_losses, fcis_roi_outputs, inference_probs, legacy_box_iou,
                               mask_voting, paste_cv2, pick_class, roi_mask_targets, smooth_l1)


def test_legacy_iou_hand_worked():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0], [10.0, 10.0, 20.0, 20.0]])
    # 10 x 10 boxes overlapping in 5 x 10: 50 / 150
    assert torch.allclose(legacy_box_iou(a, b), torch.tensor([[1 / 3, 0.0]]))


def test_group_max_average_and_pick_hand_worked():
    # 2 classes, 1 x 1 group, pooled 1: the class score is max(inside, outside) averaged
    k = 2
    maps = torch.tensor([1.0, 3.0, -2.0, 0.5]).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    box_map = torch.zeros(1, 8, 2, 2)
    rois = torch.tensor([[0, 0.0, 0.0, 31.0, 31.0]])
    cls, seg, box = fcis_roi_outputs(maps, box_map, rois, k, 2, 1, 1, 1 / 16)
    assert torch.equal(cls, torch.tensor([[3.0, 0.5]]))
    assert torch.equal(pick_class(seg, torch.tensor([1]))[0, :, 0, 0], torch.tensor([-2.0, 0.5]))
    prob, mask = inference_probs(cls, seg)
    assert torch.allclose(prob, F.softmax(torch.tensor([[3.0, 0.5]]), 1))
    # arg-max class 0: inside probability of the pair (1, 3) is sigmoid(3 - 1)
    assert torch.allclose(mask, torch.sigmoid(torch.tensor(2.0)).expand(1, 1, 1))


def test_losses_hand_worked():
    cls = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, -1])
    seg = torch.zeros(3, 2, 1, 1)
    seg[1, 1] = 1.0
    masks = torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1)
    bbox_pred = torch.tensor([[0.0] * 8, [0.0] * 4 + [0.5, -2.0, 0.0, 0.0], [9.0] * 8])
    bbox_t = torch.zeros(3, 8)
    bbox_w = torch.zeros(3, 8)
    bbox_w[1, 4:] = 1
    out = fcis_losses(cls, seg, bbox_pred, labels, masks, bbox_t, bbox_w, num_images=1,
                      ohem_rois=4)
    ce = lambda logits, t: -F.log_softmax(logits, 0)[t]  # noqa: E731
    assert torch.allclose(out['loss_cls'], (ce(cls[0], 0) + ce(cls[1], 1)) / 2)
    assert torch.allclose(out['loss_seg'], 10 * ce(torch.tensor([0.0, 1.0]), 1) / 4)
    # smooth L1 (sigma 1): 0.5 * 0.25 + (2 - 0.5)
    assert torch.allclose(out['loss_bbox'], torch.tensor((0.125 + 1.5) / 4))
    assert torch.equal(smooth_l1(torch.tensor([0.1, -3.0]), 3.0),
                       torch.tensor([0.5 * 9 * 0.01, 3.0 - 0.5 / 9]))


def test_mask_targets_match_cv2_per_roi():
    rng = np.random.RandomState(0)
    h, w = 60, 80
    gt_masks = (rng.rand(2, h, w) > 0.4).astype(np.float64)
    gt_boxes = np.array([[5, 7, 50, 40], [30, 20, 75, 55]], dtype=np.float64)
    rois = np.array([[3.4, 5.6, 44.5, 50.2], [28.0, 25.0, 79.0, 59.0], [6, 8, 8, 9],
                     [10, 10, 52, 31.49]], dtype=np.float64)
    assigned = np.array([0, 1, 0, 0])
    out = roi_mask_targets(torch.from_numpy(rois), torch.from_numpy(gt_boxes),
                           torch.from_numpy(gt_masks), torch.from_numpy(assigned))
    for i, (roi, g) in enumerate(zip(rois, assigned)):
        ex = np.round(roi).astype(int)
        gt = np.round(gt_boxes[g]).astype(int)
        target = np.zeros((ex[3] - ex[1] + 1, ex[2] - ex[0] + 1))
        x1, y1 = max(ex[0], gt[0]), max(ex[1], gt[1])
        x2, y2 = min(ex[2], gt[2]), min(ex[3], gt[3])
        target[y1 - ex[1]:y2 - ex[1] + 1, x1 - ex[0]:x2 - ex[0] + 1] = \
            gt_masks[g, y1:y2 + 1, x1:x2 + 1]
        ref = cv2.resize(target, (21, 21)) >= 0.4
        assert np.array_equal(out[i].numpy() == 1, ref), i


def test_mask_voting_hand_worked():
    # three candidates: two near-identical boxes of class 1 whose masks cover the left and the
    # right half, and a far box; weights 0.6 / 0.4: the vote keeps the left half (0.6 >= 0.4),
    # and the overlap of both halves (none here); the far box is its own detection
    size = 4
    left = torch.zeros(size, size)
    left[:, :2] = 1
    right = torch.zeros(size, size)
    right[:, 2:] = 1
    masks = torch.stack([left, right, torch.ones(size, size)])
    boxes = torch.tensor([[0.0, 0.0, 7.0, 7.0], [0.0, 0.0, 7.0, 7.0], [20.0, 20.0, 23.0, 23.0]])
    scores = torch.tensor([[0.4, 0.6, 0.0], [0.6, 0.4, 0.0], [0.1, 0.0, 0.9]])
    vb, vm, labels, sc = mask_voting(boxes, masks, scores, 30, 30)
    order = torch.argsort(labels)
    vb, vm, labels, sc = vb[order], vm[order], labels[order], sc[order]
    assert labels.tolist() == [1, 2]
    assert torch.allclose(sc, torch.tensor([0.6, 0.9]))
    # class 1: the weighted vote is 0.6 on the left half, 0.4 on the right half (>= 0.4 too)
    assert vb[0].tolist() == [0.0, 0.0, 7.0, 7.0]
    # class 2: only the far box votes for itself
    assert vb[1].tolist() == [20.0, 20.0, 23.0, 23.0]
    image = paste_cv2(vm, vb, 30, 30)
    assert image[0, :8, :8].all() and image[0].sum() == 64
    assert image[1, 20:24, 20:24].all() and image[1].sum() == 16
