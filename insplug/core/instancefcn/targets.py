"""InstanceFCN window targets on a stride-S feature map.

Shapes: N objects of one image (masks H_img x W_img, boxes (N, 4) x1 y1 x2 y2 in image
pixels); (h, w) the feature map; m the window side in cells; P positive windows.

Window (y, x) covers feature cells [y - m//2, y + m//2] x [x - m//2, x + m//2], i.e. image
pixels [(x - m//2) S, (x + m//2 + 1) S) (side L = m S, centre ((x + 0.5) S, (y + 0.5) S)).
A window is positive for an object that is "centred" in it and fits its scale (paper Sec. 4,
DeepMask's definition): the box centre within ``center_shift * L`` of the window centre on both
axes, and the box's longer side within ``[r L / t, r L t]`` (r = ``obj_ratio``, t =
``scale_tolerance``). Several candidates: the nearest centre (then the lowest index) wins.
Its mask target is the object's mask at cell resolution (a cell is foreground when at least
half of its S x S pixels are) on the window's m x m cells.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.position_sensitive import assemble_windows

# DeepMask's canonical object: longest side 128 px in a 224-px window, centre within +-16 px
OBJ_RATIO = 128 / 224
CENTER_SHIFT = 16 / 224
# half a step of the paper's 1.5x image pyramid on each side
SCALE_TOLERANCE = 1.5 ** 0.5


def cell_masks(masks: Tensor, stride: int, height: int, width: int) -> Tensor:
    """Object masks at feature-cell resolution.

    Args:
        masks: (N, H_img, W_img) {0, 1}.
        stride: S. height, width: (h, w) of the feature map.

    Returns:
        (N, h, w) float {0, 1}: mean of the cell's S x S pixels >= 0.5 (pixels beyond the
        image count as background).
    """
    n, hi, wi = masks.shape
    big = masks.new_zeros((n, height * stride, width * stride), dtype=torch.float32)
    hh, ww = min(hi, height * stride), min(wi, width * stride)
    big[:, :hh, :ww] = masks[:, :hh, :ww].float()
    return (F.avg_pool2d(big[:, None], stride)[:, 0] >= 0.5).float()


def window_assignment(boxes: Tensor, height: int, width: int, stride: int, window: int,
                      obj_ratio: float = OBJ_RATIO, center_shift: float = CENTER_SHIFT,
                      scale_tolerance: float = SCALE_TOLERANCE) -> Tensor:
    """Object assigned to the window centred on each feature cell.

    Args:
        boxes: (N, 4) image pixels.
        height, width: (h, w). stride: S. window: m.

    Returns:
        (h, w) int64: the object's index, -1 for a negative window.
    """
    side = float(window * stride)
    if boxes.shape[0] == 0:
        return torch.full((height, width), -1, dtype=torch.long, device=boxes.device)
    b = boxes.float()
    centre = (b[:, :2] + b[:, 2:]) / 2  # (N, 2) x, y
    longest = (b[:, 2:] - b[:, :2]).max(1).values
    fits = (longest >= obj_ratio * side / scale_tolerance) & \
        (longest <= obj_ratio * side * scale_tolerance)
    cy = (torch.arange(height, device=b.device, dtype=b.dtype) + 0.5) * stride
    cx = (torch.arange(width, device=b.device, dtype=b.dtype) + 0.5) * stride
    dx = centre[None, None, :, 0] - cx[None, :, None]  # (1, w, N)
    dy = centre[None, None, :, 1] - cy[:, None, None]  # (h, 1, N)
    lim = center_shift * side
    ok = (dx.abs() <= lim) & (dy.abs() <= lim) & fits  # (h, w, N)
    dist = torch.where(ok, dx * dx + dy * dy, torch.full_like(dx * dy, float('inf')))
    best = dist.argmin(-1)  # first minimum: the lowest index on ties
    return torch.where(ok.any(-1), best, torch.full_like(best, -1))


def window_mask_targets(cells: Tensor, obj_idx: Tensor, ys: Tensor, xs: Tensor,
                        window: int) -> Tuple[Tensor, Tensor]:
    """Mask targets of windows centred on (ys, xs).

    Args:
        cells: (N, h, w) from :func:`cell_masks`.
        obj_idx, ys, xs: (P,) int64 assigned object and window centre cell.
        window: m.

    Returns:
        targets (P, m, m) float {0, 1}; valid (P, m, m) bool (cells inside the map).
    """
    h, w = cells.shape[-2:]
    y0, x0 = ys - window // 2, xs - window // 2
    targets = assemble_windows(cells[:, None], obj_idx, y0, x0, window, fill=0.0)
    off = torch.arange(window, device=cells.device)
    yy, xx = y0[:, None] + off, x0[:, None] + off
    valid = ((yy >= 0) & (yy < h))[:, :, None] & ((xx >= 0) & (xx < w))[:, None, :]
    return targets, valid
