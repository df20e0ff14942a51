"""Polar IoU loss of PolarMask (Xie et al., CVPR 2020).

Shape shorthand: N positive points, R rays per point (36 in PolarMask).

With predicted and target ray lengths d and d* of one point, the IoU of the two polar
polygons is approximated by ``sum_r min(d, d*) / sum_r max(d, d*)``, and the loss is
``log(sum_r max(d, d*) / sum_r min(d, d*))`` (the binary cross-entropy of that IoU against 1).
The official release (``MaskIOULoss``) weights it by the polar centerness target and divides the
sum by the sum of those weights.

The box loss of the release, mmdet 1.x's ``IoULoss`` with ``+1`` box sizes, is here too
(:func:`legacy_box_iou_loss`); it is not the FCOS ``(I + 1) / (U + 1)`` smoothing.
"""
import torch
from torch import Tensor


def polar_iou_loss_per_point(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Polar IoU loss of each point.

    Args:
        pred: (N, R) positive predicted ray lengths.
        target: (N, R) positive target ray lengths.
        eps: floor of the denominator.

    Returns:
        (N,) losses, >= 0, 0 where pred == target.
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f'polar_iou_loss: `pred` {tuple(pred.shape)} and `target` '
                         f'{tuple(target.shape)} must both be (N, R)')
    total_max = torch.maximum(pred, target).sum(dim=1)
    total_min = torch.minimum(pred, target).sum(dim=1).clamp(min=eps)
    return torch.log(total_max / total_min)


def polar_iou_loss(pred: Tensor, target: Tensor, weight: Tensor = None,
                   avg_factor: float = None) -> Tensor:
    """Weighted mean of the polar IoU loss.

    Args:
        pred: (N, R) predicted ray lengths.
        target: (N, R) target ray lengths.
        weight: optional (N,) per-point weights (PolarMask: the polar centerness target).
        avg_factor: divisor of the weighted sum; default the number of points N.

    Returns:
        scalar loss (0 connected to ``pred`` when N == 0).
    """
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    loss = polar_iou_loss_per_point(pred, target)
    if weight is not None:
        loss = loss * weight
    denom = float(loss.shape[0]) if avg_factor is None else avg_factor
    return loss.sum() / denom


def legacy_box_ious(pred: Tensor, target: Tensor) -> Tensor:
    """IoU of aligned boxes with the legacy ``+1`` pixel convention (mmdet 1.x
    ``bbox_overlaps(is_aligned=True)``): widths are ``x2 - x1 + 1``, intersections
    ``min(x2) - max(x1) + 1`` (clamped at 0).

    Args:
        pred: (N, 4) x1, y1, x2, y2. target: (N, 4).

    Returns:
        (N,) IoU.
    """
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area1 = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    area2 = (target[:, 2] - target[:, 0] + 1) * (target[:, 3] - target[:, 1] + 1)
    return overlap / (area1 + area2 - overlap)


def legacy_box_iou_loss(pred: Tensor, target: Tensor, weight: Tensor = None,
                        avg_factor: float = None, eps: float = 1e-6) -> Tensor:
    """``sum_i w_i * -log(max(iou_i, eps)) / avg_factor`` with :func:`legacy_box_ious`
    (mmdet 1.x ``IoULoss``, the box loss of the PolarMask release).

    Args:
        pred: (N, 4) boxes. target: (N, 4) boxes. weight: optional (N,).
        avg_factor: divisor (default N).
        eps: floor of the IoU.

    Returns:
        scalar (0 connected to ``pred`` when N == 0).
    """
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    loss = -legacy_box_ious(pred, target).clamp(min=eps).log()
    if weight is not None:
        loss = loss * weight
    denom = float(loss.shape[0]) if avg_factor is None else avg_factor
    return loss.sum() / denom
