"""CenterMask's MaskIoU targets and loss, as centermask2 (the official release) computes them.

Shape shorthand: N positive RoIs, M mask side (28), H x W image.

The target of RoI i is the IoU of its binarised predicted mask with the *whole* ground-truth
object, measured in the RoI's M x M grid: the GT area outside the RoI is not in the grid, so it
is estimated from the fraction ``r_i`` of the object's area that falls inside the RoI box::

    full_i  = sum(gt_i) / max(r_i, 1e-10)          # whole GT area in RoI-grid units
    inter_i = sum(pred_i & gt_i),  pred_i = logit_i > 0
    target_i = inter_i / max(sum(pred_i) + full_i - inter_i, 1)

centermask2 (``mask_head.py``, ``mask_rcnn_loss``) gets ``r_i`` from the annotation polygons:
the object's polygons, shifted to the box origin, are rasterised by pycocotools on an
``int(h) x int(w)`` canvas (the box's truncated size), and their pixel count is divided by the
polygons' shoelace area, then clamped to [0, 1] (:func:`polygon_area_ratios`). For bitmap
annotations :func:`bitmap_area_ratios` counts the object's pixels inside the box instead.

Loss (``maskiou_head.py``, ``mask_iou_loss``): ``0.5 * (p_i - t_i)^2`` summed over the RoIs
with ``t_i > 0`` and divided by their number (0 when none), times the loss weight.
"""
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ['polygon_area_ratios', 'bitmap_area_ratios', 'maskiou_targets', 'maskiou_loss']


def polygon_area_ratios(polygons: Sequence[List[np.ndarray]], boxes: Tensor) -> Tensor:
    """Fraction of each object's area inside its RoI box, from polygons (centermask2's).

    Args:
        polygons: N objects, each a list of flat (2 P,) float arrays x0, y0, x1, y1, ... in
            image coordinates (the object matched to each RoI).
        boxes: (N, 4) RoI boxes x1, y1, x2, y2.

    Returns:
        (N,) float64 in [0, 1] on ``boxes``' device.
    """
    import pycocotools.mask as mask_utils
    out = np.zeros(len(polygons), dtype=np.float64)
    boxes_np = boxes.detach().cpu().numpy()
    for i, (obj, box) in enumerate(zip(polygons, boxes_np)):
        shifted = []
        for p in obj:
            p = np.asarray(p, dtype=np.float64).copy()
            p[0::2] -= box[0]
            p[1::2] -= box[1]
            shifted.append(p)
        # pycocotools truncates the float canvas size to an integer
        h, w = int(box[3] - box[1]), int(box[2] - box[0])
        inside = mask_utils.area(mask_utils.frPyObjects(shifted, h, w)).sum().astype(float) \
            if h > 0 and w > 0 and shifted else 0.0
        total = sum(_shoelace(np.asarray(p, dtype=np.float64)) for p in obj)
        out[i] = inside / total if total > 0 else (np.inf if inside > 0 else np.nan)
    ratios = torch.from_numpy(out).to(boxes.device)
    # nan (0 / 0) clamps to nan in torch; treat a degenerate polygon as "all outside"
    return torch.nan_to_num(ratios, nan=0.0).clamp(0.0, 1.0)


def _shoelace(p: np.ndarray) -> float:
    x, y = p[0::2], p[1::2]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def bitmap_area_ratios(gt_masks: Tensor, gt_index: Tensor, boxes: Tensor) -> Tensor:
    """Fraction of each object's pixels whose centre lies inside its RoI box.

    Args:
        gt_masks: (G, H, W) bool masks of one image.
        gt_index: (N,) object of each RoI.
        boxes: (N, 4) RoI boxes x1, y1, x2, y2.

    Returns:
        (N,) float64 in [0, 1] (0 for an empty object).
    """
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0,), dtype=torch.float64)
    masks = gt_masks[gt_index].bool()                                    # (N, H, W)
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=boxes.device, dtype=torch.float64) + 0.5
    xs = torch.arange(w, device=boxes.device, dtype=torch.float64) + 0.5
    b = boxes.to(torch.float64)
    in_y = (ys[None] >= b[:, 1:2]) & (ys[None] <= b[:, 3:4])              # (N, H)
    in_x = (xs[None] >= b[:, 0:1]) & (xs[None] <= b[:, 2:3])              # (N, W)
    inside = (masks & in_y[:, :, None] & in_x[:, None, :]).flatten(1).sum(1).to(torch.float64)
    total = masks.flatten(1).sum(1).to(torch.float64)
    return (inside / total.clamp(min=1)).clamp(0.0, 1.0)


@torch.no_grad()
def maskiou_targets(mask_logits: Tensor, roi_targets: Tensor, area_ratios: Tensor) -> Tensor:
    """centermask2's MaskIoU targets.

    Args:
        mask_logits: (N, M, M) predicted mask logits of each RoI's GT class.
        roi_targets: (N, M, M) {0, 1} GT mask of each RoI in its M x M grid.
        area_ratios: (N,) fraction of the GT object's area inside the RoI box.

    Returns:
        (N,) float64 targets in [0, 1], detached.
    """
    pred = mask_logits > 0
    gt = roi_targets > 0.5
    ratios = torch.clamp(area_ratios.to(torch.float64), min=1e-10)
    full_area = gt.flatten(1).sum(1) / ratios
    inter = (pred & gt).flatten(1).sum(1).to(torch.float64)
    union = (pred.flatten(1).sum(1) + full_area - inter).clamp(min=1.0)
    return inter / union


def maskiou_loss(pred_iou: Tensor, target_iou: Tensor, weight: float = 1.0) -> Tensor:
    """``weight * sum_{t > 0} 0.5 (p - t)^2 / #(t > 0)``; 0 (in the graph) when no t > 0.

    Args:
        pred_iou: (N,) predicted IoU at each RoI's GT class.
        target_iou: (N,) targets from :func:`maskiou_targets`.
        weight: MASKIOU_LOSS_WEIGHT (1.0).

    Returns:
        scalar, in the dtype of ``pred_iou`` promoted with ``target_iou``.
    """
    if pred_iou.shape != target_iou.shape or pred_iou.dim() != 1:
        raise ValueError(f'pred_iou and target_iou must both have shape (N,), got '
                         f'{tuple(pred_iou.shape)} and {tuple(target_iou.shape)}')
    pos = target_iou > 0
    num = int(pos.sum())
    if num == 0:
        return pred_iou.sum() * 0.0
    diff = pred_iou[pos] - target_iou[pos].detach()
    return weight * (0.5 * diff.pow(2) / num).sum()
