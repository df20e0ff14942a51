"""Pasting RoI masks into the image: the one box paste every method's predict path uses.

Shapes: N instances, an (Mh, Mw) mask per instance in its box's frame, an H x W image.

The geometry is detectron2's / mmdet's ``_do_paste_mask`` (bilinear ``grid_sample``, zeros
padding, ``align_corners=False``): image pixel centre ``c + 0.5`` maps to
``(c + 0.5 - x1) / (x2 - x1) * 2 - 1`` across the box. What differs between the official
pasters is only WHERE they sample: mmdet 2.x / detectron2 on CPU sample each box (or chunk) on
its bounding window with a 1 px margin, detectron2 on GPU and mmdet's ``skip_empty=False`` over
the whole image. Bilinear sampling with zeros padding is exactly 0 farther than half a mask
cell (``box side / (2 M)``) outside the box, so this paster samples each box on its exact
support window, ``[x1 - w / (2 Mw) - 1/2, x2 + w / (2 Mw)]`` grown by 1 px, which gives the
whole-image result bit for bit (every sampled pixel uses the same float formula) at a cost that
depends on the box sizes, not on the image size.

Batching without a per-instance Python loop: boxes are sorted by window area and cut into a
fixed number of equal-count groups (4, whatever N), each group is sampled at once (in chunks of
bounded memory) on a window of its largest extent (each box's window at its own offset, shifted inside the
image), thresholded, and scattered into a preallocated (N, H, W) output.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# at most this many window pixels (instances x window height x width) are sampled at once
PASTE_CHUNK_PIXELS = 1 << 24
# boxes are sampled in this many size groups (sorted by window area, equal counts)
PASTE_GROUPS = 4


def paste_windows(boxes: Tensor, mask_size, height: int, width: int) -> Tensor:
    """Integer pixel window of each box outside which its bilinear paste is exactly 0.

    Args:
        boxes: (N, 4) x1, y1, x2, y2 in image pixels.
        mask_size: (Mh, Mw) side of the masks being pasted.
        height, width: image size.

    Returns:
        (N, 4) int64 x0, y0, x1, y1 with 0 <= x0 <= x1 <= width (same for y); a window may be
        empty (box outside the image).
    """
    b = boxes.detach().double()
    mh, mw = float(mask_size[0]), float(mask_size[1])
    half_x = (b[:, 2] - b[:, 0]).abs() / (2 * mw)
    half_y = (b[:, 3] - b[:, 1]).abs() / (2 * mh)
    # nonzero only where the sampled mask coordinate lies in (-1, M): the pixel centre within
    # half a mask cell of the box; floor/ceil and 1 px more keep every such pixel
    x0 = torch.floor(b[:, 0] - half_x - 0.5) - 1
    y0 = torch.floor(b[:, 1] - half_y - 0.5) - 1
    x1 = torch.ceil(b[:, 2] + half_x) + 1
    y1 = torch.ceil(b[:, 3] + half_y) + 1
    win = torch.stack([x0.clamp(0, width), y0.clamp(0, height), x1.clamp(0, width),
                       y1.clamp(0, height)], 1)
    win = torch.nan_to_num(win, nan=0.0)  # a NaN box pastes nothing
    win[:, 2] = torch.maximum(win[:, 2], win[:, 0])
    win[:, 3] = torch.maximum(win[:, 3], win[:, 1])
    return win.long()


def sample_box_windows(masks: Tensor, boxes: Tensor, x0: Tensor, y0: Tensor, win_h: int,
                       win_w: int, dtype=torch.float32) -> Tensor:
    """Bilinear samples of each mask at the image pixels of a window (the paste geometry).

    Args:
        masks: (n, Mh, Mw) values in box coordinates.
        boxes: (n, 4) x1, y1, x2, y2 in image pixels.
        x0, y0: (n,) int64 top-left image pixel of each window.
        win_h, win_w: window size (the same for all n).
        dtype: float type the coordinates and samples are computed in.

    Returns:
        (n, win_h, win_w) samples; pixel (i, j) of window k is image pixel
        (y0[k] + i, x0[k] + j).
    """
    n = masks.shape[0]
    dev = masks.device
    ys = (y0[:, None] + torch.arange(win_h, device=dev)).to(dtype) + 0.5  # (n, h)
    xs = (x0[:, None] + torch.arange(win_w, device=dev)).to(dtype) + 0.5  # (n, w)
    bx0, by0, bx1, by1 = boxes.to(dtype).unbind(1)
    gy = (ys - by0[:, None]) / (by1 - by0).clamp(min=1e-6)[:, None] * 2 - 1
    gx = (xs - bx0[:, None]) / (bx1 - bx0).clamp(min=1e-6)[:, None] * 2 - 1
    grid = gx.new_empty((n, win_h, win_w, 2))
    grid[..., 0] = gx[:, None, :]
    grid[..., 1] = gy[:, :, None]
    return F.grid_sample(masks[:, None].to(dtype), grid, mode='bilinear', padding_mode='zeros',
                         align_corners=False)[:, 0]


def paste_masks_in_boxes(masks: Tensor, boxes: Tensor, height: int, width: int,
                         threshold: Optional[float] = 0.5, dtype=None,
                         chunk_pixels: int = PASTE_CHUNK_PIXELS,
                         groups: int = PASTE_GROUPS) -> Tensor:
    """Paste N box-frame masks into (N, H, W) image masks, sampling only inside each box's
    support window (see the module docstring; equal to a whole-image ``grid_sample``).

    Args:
        masks: (N, Mh, Mw) probabilities (or any values) in box coordinates.
        boxes: (N, 4) x1, y1, x2, y2 in the output image's pixels (not clipped here).
        height, width: output size H, W.
        threshold: ``>= threshold`` gives bool masks (must be > 0: pixels farther from the box
            are 0); a negative value gives uint8 ``probability * 255`` (mmdet's
            ``mask_thr_binary < 0``); None gives the sampled values themselves in ``dtype``.
        dtype: float type of the sampling (default: the masks' float type, else float32;
            mmdet and the RefineMask release paste in float32).
        chunk_pixels: upper bound of instances x window pixels sampled at once.
        groups: number of size groups (a fixed number of batched samplings, whatever N).

    Returns:
        (N, H, W) bool (uint8 when ``threshold < 0``, ``dtype`` when None), 0 outside each
        box's support.
    """
    height, width = int(height), int(width)
    n = masks.shape[0]
    if dtype is None:
        dtype = masks.dtype if masks.is_floating_point() else torch.float32
    if threshold is None:
        out_dtype = dtype
    else:
        out_dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros((n, height, width), dtype=out_dtype, device=masks.device)
    if n == 0 or height == 0 or width == 0:
        return out
    win = paste_windows(boxes, masks.shape[-2:], height, width)
    win_w, win_h = win[:, 2] - win[:, 0], win[:, 3] - win[:, 1]
    # size groups: boxes sorted by window area, cut into ``groups`` runs of equal count, so
    # each run samples a window close to its own boxes' size; empty windows are skipped
    area = win_w * win_h
    order = torch.argsort(area)
    order = order[area[order] > 0]
    for idx in torch.tensor_split(order, min(groups, max(1, order.numel()))):
        if idx.numel() == 0:
            continue
        count = idx.numel()
        gh, gw = int(win_h[idx].max()), int(win_w[idx].max())
        per_chunk = max(1, chunk_pixels // (gh * gw))
        for c0 in range(0, count, per_chunk):
            sel = idx[c0:c0 + per_chunk]
            # shift each window inside the image (it keeps covering the box's support: the
            # support window is at most gh x gw and lies in the image)
            x0 = win[sel, 0].clamp(max=width - gw)
            y0 = win[sel, 1].clamp(max=height - gh)
            vals = sample_box_windows(masks[sel], boxes[sel], x0, y0, gh, gw, dtype)
            if threshold is None:
                pasted = vals
            elif threshold >= 0:
                pasted = vals >= threshold
            else:
                pasted = (vals * 255).to(torch.uint8)
            # every gh x gw window of every instance's plane as one strided view; each
            # instance writes one block (distinct instances: no overlapping writes)
            blocks = out.as_strided((n, height - gh + 1, width - gw + 1, gh, gw),
                                    (height * width, width, 1, width, 1))
            blocks[sel, y0, x0] = pasted
    return out
