"""Polar IoU loss of PolarMask (Xie et al., CVPR 2020).

Shape shorthand: N positive points, R rays per point (36 in PolarMask).

With predicted and target ray lengths d and d* of one point, the IoU of the two polar
polygons is approximated by ``sum_r min(d, d*) / sum_r max(d, d*)``, and the loss is
``log(sum_r max(d, d*) / sum_r min(d, d*))`` (the binary cross-entropy of that IoU against 1).
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
