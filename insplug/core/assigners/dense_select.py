"""Inference counterpart of the point assignment: choose detections of a dense FCOS-style head.

Shape shorthand: P points (levels concatenated), K classes, M candidates, D detections.

Per level, the (point, class) pairs whose classification probability exceeds ``score_thr`` are
kept, at most ``nms_pre`` of them (highest first); the score of a pair is the class probability
times the point's score factor (FCOS: the centerness). Class-aware NMS follows
(:func:`insplug.core.postprocess.nms.box_nms`).
"""
from typing import List, Tuple

import torch
from torch import Tensor


def select_candidates(probs: Tensor, factors: Tensor, level_sizes: List[int], nms_pre: int,
                      score_thr: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Top (point, class) pairs of every level above the threshold.

    Args:
        probs: (P, K) class probabilities.
        factors: (P,) score factors (1 for none).
        level_sizes: points per level, summing to P.
        nms_pre: per-level cap (<= 0: no cap).
        score_thr: minimum class probability.

    Returns:
        point index (M,), class label (M,), score (M,) = probability * factor.
    """
    idx, labels, scores = [], [], []
    begin = 0
    for size in level_sizes:
        p = probs[begin:begin + size]
        point, label = (p > score_thr).nonzero(as_tuple=True)
        value = p[point, label]
        if 0 < nms_pre < value.numel():
            value, order = value.topk(nms_pre)
            point, label = point[order], label[order]
        idx.append(point + begin)
        labels.append(label)
        scores.append(value)
        begin += size
    idx = torch.cat(idx)
    return idx, torch.cat(labels), torch.cat(scores) * factors[idx]


def distance_to_boxes(points: Tensor, distances: Tensor, max_shape=None) -> Tensor:
    """Decode FCOS side distances.

    Args:
        points: (N, 2) xy.
        distances: (N, 4) left, top, right, bottom.
        max_shape: optional (H, W) to clip to.

    Returns:
        (N, 4) x1, y1, x2, y2.
    """
    boxes = torch.cat((points - distances[:, :2], points + distances[:, 2:]), dim=1)
    if max_shape is not None:
        h, w = max_shape[:2]
        boxes = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)), dim=1)
    return boxes
