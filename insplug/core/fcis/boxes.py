"""Legacy (inclusive-pixel) box maths of the FCIS release (``lib/bbox/bbox_transform.py``).

Shapes: N / M boxes (x1, y1, x2, y2) whose width is ``x2 - x1 + 1`` (the py-faster-rcnn
convention the release uses throughout).
"""
import torch
from torch import Tensor


def legacy_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU with inclusive widths ``x2 - x1 + 1`` (``bbox_overlaps``).

    Args:
        boxes1: (N, 4); boxes2: (M, 4).

    Returns:
        (N, M) IoU.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    iw = (torch.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
          - torch.maximum(boxes1[:, None, 0], boxes2[None, :, 0]) + 1)
    ih = (torch.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
          - torch.maximum(boxes1[:, None, 1], boxes2[None, :, 1]) + 1)
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def legacy_box_encode(rois: Tensor, gt: Tensor) -> Tensor:
    """Regression targets (dx, dy, dw, dh) of ``gt`` w.r.t. ``rois`` (``nonlinear_transform``).

    Args:
        rois: (N, 4); gt: (N, 4).

    Returns:
        (N, 4).
    """
    ew = rois[:, 2] - rois[:, 0] + 1.0
    eh = rois[:, 3] - rois[:, 1] + 1.0
    ex = rois[:, 0] + 0.5 * (ew - 1.0)
    ey = rois[:, 1] + 0.5 * (eh - 1.0)
    gw = gt[:, 2] - gt[:, 0] + 1.0
    gh = gt[:, 3] - gt[:, 1] + 1.0
    gx = gt[:, 0] + 0.5 * (gw - 1.0)
    gy = gt[:, 1] + 0.5 * (gh - 1.0)
    return torch.stack([(gx - ex) / (ew + 1e-14), (gy - ey) / (eh + 1e-14),
                        torch.log(gw / ew), torch.log(gh / eh)], 1)


def legacy_box_decode(boxes: Tensor, deltas: Tensor) -> Tensor:
    """Apply (dx, dy, dw, dh) to boxes (``nonlinear_pred``).

    Args:
        boxes: (N, 4); deltas: (N, 4).

    Returns:
        (N, 4).
    """
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    cx = boxes[:, 0] + 0.5 * (w - 1.0)
    cy = boxes[:, 1] + 0.5 * (h - 1.0)
    px = deltas[:, 0] * w + cx
    py = deltas[:, 1] * h + cy
    pw = torch.exp(deltas[:, 2]) * w
    ph = torch.exp(deltas[:, 3]) * h
    return torch.stack([px - 0.5 * (pw - 1.0), py - 0.5 * (ph - 1.0),
                        px + 0.5 * (pw - 1.0), py + 0.5 * (ph - 1.0)], 1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clip to ``[0, width - 1] x [0, height - 1]`` (``clip_boxes``).

    Args:
        boxes: (N, 4).

    Returns:
        (N, 4).
    """
    return torch.stack([boxes[:, 0].clamp(0, width - 1), boxes[:, 1].clamp(0, height - 1),
                        boxes[:, 2].clamp(0, width - 1), boxes[:, 3].clamp(0, height - 1)], 1)
