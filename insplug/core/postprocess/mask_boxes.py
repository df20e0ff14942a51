"""Boxes of binary masks, for methods whose instances are masks first (N masks of H x W)."""
import torch
from torch import Tensor


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight ``(x1, y1, x2, y2)`` boxes of binary masks, x2/y2 exclusive (pixel edges, as
    mmdet's ``BitmapMasks.get_bboxes``).

    Args:
        masks: (N, H, W) bool.

    Returns:
        (N, 4) float; all zeros for an empty mask.
    """
    num, height, width = masks.shape
    if num == 0:
        return masks.new_zeros(0, 4, dtype=torch.float32)
    # max-reductions over uint8 views: ~10x faster on CPU than bool ``any`` over a dimension
    flat = masks.to(torch.bool).view(torch.uint8)
    cols, rows = flat.amax(1) > 0, flat.amax(2) > 0  # (N, W), (N, H)
    xs = torch.arange(width, device=masks.device)
    ys = torch.arange(height, device=masks.device)
    x1 = torch.where(cols, xs, width).min(1).values
    x2 = torch.where(cols, xs + 1, 0).max(1).values
    y1 = torch.where(rows, ys, height).min(1).values
    y2 = torch.where(rows, ys + 1, 0).max(1).values
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return boxes * cols.any(1, keepdim=True)
