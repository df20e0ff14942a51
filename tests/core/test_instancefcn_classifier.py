"""InstanceFCN's segment classifier (MNC's stage 3): hand-worked targets, sampling, mask inputs,
pathways, loss and class-aware post-processing (tests/core, framework-free)."""
import math

import torch

from insplug.core.instancefcn import (SegmentClassifier, classifier_loss, classifier_targets,
                                      classify_segments, sample_segments, segment_mask_inputs)


def _box_mask(h, w, x1, y1, x2, y2):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def test_targets_hand_worked():
    # two objects: A (class 3) box [0, 0, 10, 10] full square; B (class 1) box [20, 0, 30, 10]
    # whose mask is only its left half (x 20..25)
    h, w = 20, 40
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    gt_masks = torch.stack([_box_mask(h, w, 0, 0, 10, 10), _box_mask(h, w, 20, 0, 25, 10)])
    gt_labels = torch.tensor([3, 1])
    boxes = torch.tensor([
        [0.0, 0, 10, 8],     # box IoU with A 80/100 = 0.8; mask = A's rows 0..8 -> IoU 0.8
        [0.0, 0, 10, 10],    # box IoU 1 with A, but its mask is A's left 4 columns: IoU 0.4
        [0.0, 0, 5, 10],     # box IoU with A 0.5 exactly (>= 0.5), mask the box: IoU 0.5
        [22.0, 0, 32, 10],   # box IoU with B 80/120 = 0.667; mask [22, 25) x 10: IoU 30/50 = 0.6
        [10.0, 0, 20, 10],   # box IoU 0 with both (touching): background
    ])
    masks = torch.stack([_box_mask(h, w, 0, 0, 10, 8), _box_mask(h, w, 0, 0, 4, 10),
                         _box_mask(h, w, 0, 0, 5, 10), _box_mask(h, w, 22, 0, 25, 10),
                         _box_mask(h, w, 10, 0, 20, 10)])
    det, labels = classifier_targets(boxes, masks, gt_boxes, gt_masks, gt_labels, num_classes=5)
    assert torch.allclose(det, torch.tensor([0.8, 1.0, 0.5, 80 / 120, 0.0]))
    # K = 5 is background
    assert labels.tolist() == [3, 5, 3, 1, 5]
    # stricter segment threshold: the 0.5 / 0.6 mask IoUs become background
    _, labels = classifier_targets(boxes, masks, gt_boxes, gt_masks, gt_labels, 5,
                                   fg_seg_thr=0.7)
    assert labels.tolist() == [3, 5, 5, 5, 5]
    # no objects: everything background, overlap 0
    det, labels = classifier_targets(boxes, masks, gt_boxes[:0], gt_masks[:0], gt_labels[:0], 5)
    assert det.tolist() == [0.0] * 5 and labels.tolist() == [5] * 5


def test_sampling_ranges_and_counts():
    # 6 segments in [0.5, 1], 10 in [0.1, 0.5), 10 in [0, 0.1)
    det = torch.tensor([0.9] * 6 + [0.3] * 10 + [0.05] * 10)
    g = torch.Generator().manual_seed(0)
    idx = sample_segments(det, num=10, generator=g)
    # round(10 * 0.3) = 3 foreground, 5 middle, 2 low
    assert ((det[idx] >= 0.5).sum(), ((det[idx] >= 0.1) & (det[idx] < 0.5)).sum(),
            (det[idx] < 0.1).sum()) == (3, 5, 2)
    assert idx.unique().numel() == idx.numel()
    # fewer candidates than asked: all of them (2 foreground), no duplicates
    det = torch.tensor([0.7, 0.6, 0.3, 0.0])
    idx = sample_segments(det, num=64, generator=g)
    assert idx.tolist() == [0, 1, 2, 3]
    # a box IoU of exactly 0.5 (or 0.1) is in two closed ranges: drawn once
    det = torch.tensor([0.5, 0.1])
    assert sample_segments(det, num=64, generator=g).tolist() == [0, 1]


def test_mask_inputs_hand_worked():
    # a 28 x 28 box whose mask is its left half: the 14 x 14 input is 7 columns of ones
    m = torch.zeros(1, 60, 60, dtype=torch.bool)
    m[0, 20:48, 10:24] = True
    out = segment_mask_inputs(m, torch.tensor([[10.0, 20, 38, 48]]), size=14, threshold=0.4)
    expect = torch.zeros(14, 14)
    expect[:, :7] = 1
    assert torch.equal(out[0], expect)
    # binarisation at 0.4: a 2 x 2 box whose mask is 1 of its 4 pixels, sampled 1 x 1 at the
    # box centre (bilinear mean 0.25 < 0.4) -> 0; 2 of 4 pixels (0.5) -> 1
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, 0, 0] = True
    m[1, 0, :2] = True
    out = segment_mask_inputs(m, torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2]]), size=1)
    assert out[:, 0, 0].tolist() == [0.0, 1.0]
    # cv2.resize's border: samples beyond the crop's pixel centres replicate the crop's border
    # pixels, never reading the mask outside the box. Box [2, 4) x [2, 4) of an all-ones mask
    # with a zero 2 x 2 hole there, upsampled to 4 x 4: cell 0 samples 1.75 -> clamped to 2 (0);
    # reading pixel 1 would give 0.25 >= 0.2
    m = torch.ones(1, 6, 6, dtype=torch.bool)
    m[0, 2:4, 2:4] = False
    out = segment_mask_inputs(m, torch.tensor([[2.0, 2, 4, 4]]), size=4, threshold=0.2)
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert segment_mask_inputs(m[:0], torch.zeros(0, 4)).shape == (0, 14, 14)


def test_pathways_hand_worked():
    # one channel, P = 1, M = 2: the box pathway is the max over the RoI, the masked pathway the
    # max over the four 2x2 RoI-pool quadrants each multiplied by its mask cell
    clf = SegmentClassifier(1, num_classes=1, fc_channels=1, roi_size=1, mask_size=2)
    with torch.no_grad():
        for fc in (clf.fc6, clf.fc7, clf.fc6_mask, clf.fc7_mask):
            fc.weight.fill_(1.0)
            fc.bias.zero_()
        # logits: [2 * masked + 1 * box, -box]  (concat order: mask features, then box)
        clf.seg_cls_score.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, -1.0]]))
        clf.seg_cls_score.bias.zero_()
    feat = torch.tensor([[1.0, 2.0, 3.0, 4.0],
                         [5.0, 6.0, 7.0, 8.0],
                         [9.0, 10.0, 11.0, 12.0],
                         [13.0, 14.0, 15.0, 16.0]])[None, None]
    rois = torch.tensor([[0.0, 0, 0, 3, 3]] * 2)  # the whole 4 x 4 map (stride 1)
    # quadrant maxima: 6, 8, 14, 16; masks keep the top-left / the top row
    mask = torch.tensor([[[1.0, 0], [0, 0]], [[1.0, 1], [0, 0]]])
    logits = clf(feat, rois, mask, 1.0)
    assert torch.allclose(logits, torch.tensor([[2 * 6 + 16.0, -16], [2 * 8 + 16.0, -16]]))


def test_reduce_channels():
    clf = SegmentClassifier(8, num_classes=3, fc_channels=4, reduce_channels=2)
    assert clf.fc6.in_features == 2 * 7 * 7
    out = clf(torch.randn(1, 8, 10, 10), torch.tensor([[0.0, 0, 0, 40, 40]]),
              torch.ones(1, 14, 14), 0.25)
    assert out.shape == (1, 4)


def test_loss_hand_worked():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    out = classifier_loss(logits, torch.tensor([1, 1]), loss_weight=2.0)
    # -log(3/4) and -log(1/4), mean, times 2
    assert math.isclose(float(out['loss_seg_cls']), math.log(4 / 3) + math.log(4), rel_tol=1e-6)
    empty = classifier_loss(logits[:0], torch.zeros(0, dtype=torch.long))
    assert float(empty['loss_seg_cls']) == 0.0


def test_classify_segments_hand_worked():
    # 3 segments, K = 2 (+ background): segments 0 and 1 overlap (box IoU 0.6 > 0.3)
    probs = torch.tensor([[0.7, 0.1, 0.2],
                          [0.6, 0.3, 0.1],
                          [0.2, 0.05, 0.75]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 6], [50, 50, 60, 60]])
    seg, scores, labels = classify_segments(probs, boxes, score_thr=0.0, nms_iou=0.3)
    # class 0: 0.7 (seg 0) suppresses 0.6 (seg 1); 0.2 (seg 2) kept. class 1: 0.3 (seg 1)
    # suppresses 0.1 (seg 0); 0.05 (seg 2) kept. Background never reported.
    assert seg.tolist() == [0, 1, 2, 2]
    assert labels.tolist() == [0, 1, 0, 1]
    assert torch.allclose(scores, torch.tensor([0.7, 0.3, 0.2, 0.05]))
    # score threshold, at most 2 per class before NMS, 1 in all
    seg, scores, labels = classify_segments(probs, boxes, score_thr=0.25, max_per_img=1)
    assert seg.tolist() == [0] and labels.tolist() == [0]
    seg, scores, labels = classify_segments(probs, boxes, score_thr=0.9)
    assert seg.numel() == scores.numel() == labels.numel() == 0
