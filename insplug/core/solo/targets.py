"""SOLO / SOLOv2 grid targets (framework-free).

Shapes: G ground-truth instances of one image; (H, W) the size of the given gt masks (the
input image, un-padded in AdelaiDet, padded to the batch in mmdet); (h, w) the mask-feature
size (the padded input / ``mask_stride``); S_l the grid number of level l; P_l the positive
cells of level l.

For every level l an instance is assigned when ``lower_l <= sqrt(box area) <= upper_l``. Its
center is the mask's center of mass; the positive cells are the grid cells within
``pos_scale`` (sigma, 0.2) of the half box size around the center, cut to the 3 x 3 cells
around the center's cell. Each positive cell gets the instance's label and, as mask target,
the gt mask rescaled by ``1 / mask_stride`` with OpenCV's bilinear resize (as the releases:
``mmcv.imrescale`` / AdelaiDet's ``imrescale``), pasted at the top-left of an (h, w) canvas.
A later instance overwrites an earlier one's labels; both keep their mask targets.

Same as AdelaiDet's ``SOLOv2.get_ground_truth_single`` and mmdet 3's
``SOLOV2Head._get_targets_single`` (training only: a Python loop over instances is fine).
"""
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

# official SOLOv2 (AdelaiDet MODEL.SOLOV2.FPN_SCALE_RANGES, mmdet solov2 configs)
SOLOV2_SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
SOLOV2_NUM_GRIDS = (40, 36, 24, 16, 12)
SOLOV2_STRIDES = (8, 8, 16, 32, 32)


def center_of_mass(masks: Tensor) -> Tuple[Tensor, Tensor]:
    """Centers of mass in pixels (float32, as the releases).

    Args:
        masks: (G, H, W) binary.

    Returns:
        center_x (G,), center_y (G,); an empty mask gives 0.
    """
    _, h, w = masks.shape
    m = masks.float()
    ys = torch.arange(h, dtype=torch.float32, device=masks.device)
    xs = torch.arange(w, dtype=torch.float32, device=masks.device)
    m00 = m.sum((1, 2)).clamp(min=1e-6)
    return (m * xs).sum((1, 2)) / m00, (m * ys[:, None]).sum((1, 2)) / m00


def rescale_mask(mask: Tensor, scale: float) -> Tensor:
    """OpenCV bilinear rescale of a uint8 mask (``mmcv.imrescale``: new size
    ``int(w * scale + 0.5), int(h * scale + 0.5)``).

    Args:
        mask: (H, W) binary.

    Returns:
        (H', W') uint8 on mask's device.
    """
    h, w = mask.shape
    size = (int(w * float(scale) + 0.5), int(h * float(scale) + 0.5))
    out = cv2.resize(mask.to(torch.uint8).cpu().numpy(), size, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(out)).to(mask.device)


def _cell(value: Tensor, size: int, num_grid: int) -> int:
    """``int((value / size) // (1 / num_grid))`` in float32 (the releases' rounding)."""
    return int(torch.div(value / size, 1.0 / num_grid, rounding_mode='floor'))


def positive_cells(c_h: Tensor, c_w: Tensor, half_h: Tensor, half_w: Tensor, up_h: int,
                   up_w: int, num_grid: int) -> Tuple[int, int, int, int]:
    """The positive cells of one instance: its center's cell +- 1, cut to the sigma-scaled box.

    Args:
        c_h, c_w: center of mass (scalars). half_h, half_w: half box size x sigma (scalars).
        up_h, up_w: the padded input size (mask features x mask stride).

    Returns:
        top, down, left, right (inclusive cell rows / columns).
    """
    coord_w, coord_h = _cell(c_w, up_w, num_grid), _cell(c_h, up_h, num_grid)
    top = max(_cell(c_h - half_h, up_h, num_grid), 0, coord_h - 1)
    down = min(_cell(c_h + half_h, up_h, num_grid), num_grid - 1, coord_h + 1)
    left = max(_cell(c_w - half_w, up_w, num_grid), 0, coord_w - 1)
    right = min(_cell(c_w + half_w, up_w, num_grid), num_grid - 1, coord_w + 1)
    return top, down, left, right


def solo_targets_single(gt_boxes: Tensor, gt_labels: Tensor, gt_masks: Tensor,
                        featmap_size: Tuple[int, int], num_classes: int,
                        num_grids: Sequence[int] = SOLOV2_NUM_GRIDS,
                        scale_ranges: Sequence[Tuple[float, float]] = SOLOV2_SCALE_RANGES,
                        pos_scale: float = 0.2, mask_stride: int = 4) -> List[Dict[str, Tensor]]:
    """Targets of one image for every level.

    Args:
        gt_boxes: (G, 4) x1y1x2y2 float. gt_labels: (G,) int64 in [0, K).
        gt_masks: (G, H, W) binary, H <= h * mask_stride, W <= w * mask_stride.
        featmap_size: (h, w), the mask-feature size.
        num_classes: K (background label K).
        num_grids, scale_ranges: per level. pos_scale: sigma. mask_stride: 4.

    Returns:
        one dict per level: ``labels`` (S_l, S_l) int64 (K = background), ``pos_mask``
        (S_l * S_l,) bool, ``pos_index`` (P_l,) int64 (cell index row * S_l + col, in
        assignment order, a cell may repeat), ``mask_targets`` (P_l, h, w) uint8.
    """
    device = gt_labels.device
    h, w = int(featmap_size[0]), int(featmap_size[1])
    up_h, up_w = h * mask_stride, w * mask_stride
    areas = torch.sqrt((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))
    out = []
    for (lower, upper), num_grid in zip(scale_ranges, num_grids):
        labels = torch.full((num_grid, num_grid), num_classes, dtype=torch.int64, device=device)
        pos_mask = torch.zeros(num_grid ** 2, dtype=torch.bool, device=device)
        pos_index, targets = [], []
        hit = ((areas >= lower) & (areas <= upper)).nonzero().flatten()
        if len(hit):
            boxes, hit_labels, masks = gt_boxes[hit], gt_labels[hit], gt_masks[hit]
            half_ws = 0.5 * (boxes[:, 2] - boxes[:, 0]) * pos_scale
            half_hs = 0.5 * (boxes[:, 3] - boxes[:, 1]) * pos_scale
            center_ws, center_hs = center_of_mass(masks)
            valid = masks.sum(dim=-1).sum(dim=-1) > 0
            for mask, label, half_h, half_w, c_h, c_w, ok in zip(
                    masks, hit_labels, half_hs, half_ws, center_hs, center_ws, valid):
                if not ok:
                    continue
                top, down, left, right = positive_cells(c_h, c_w, half_h, half_w, up_h, up_w,
                                                        num_grid)
                labels[top:down + 1, left:right + 1] = label
                small = rescale_mask(mask, 1.0 / mask_stride)
                canvas = torch.zeros((h, w), dtype=torch.uint8, device=device)
                canvas[:small.shape[0], :small.shape[1]] = small[:h, :w]
                cells = [i * num_grid + j for i in range(top, down + 1)
                         for j in range(left, right + 1)]
                pos_index += cells
                targets += [canvas] * len(cells)
                pos_mask[cells] = True
        out.append(dict(
            labels=labels, pos_mask=pos_mask,
            pos_index=torch.tensor(pos_index, dtype=torch.int64, device=device),
            mask_targets=(torch.stack(targets) if targets else
                          torch.zeros((0, h, w), dtype=torch.uint8, device=device))))
    return out


def solo_v1_targets_single(gt_boxes: Tensor, gt_labels: Tensor, gt_masks: Tensor,
                           featmap_sizes: Sequence[Tuple[int, int]], num_classes: int,
                           num_grids: Sequence[int] = SOLOV2_NUM_GRIDS,
                           scale_ranges: Sequence[Tuple[float, float]] = SOLOV2_SCALE_RANGES,
                           strides: Sequence[int] = SOLOV2_STRIDES, pos_scale: float = 0.2
                           ) -> List[Dict[str, Tensor]]:
    """Targets of SOLO (vanilla and decoupled heads) for one image.

    Level l predicts masks at ``featmap_sizes[l]`` (stride ``strides[l] / 2``); an instance's
    mask target is its gt mask rescaled by ``2 / strides[l]`` (OpenCV bilinear). The cells are
    those of :func:`solo_targets_single` with the padded input size ``4 x featmap_sizes[0]``;
    a cell claimed by two instances keeps the later one's mask (WXinlong/SOLO ``SOLOHead``,
    mmdet 3 ``SOLOHead._get_targets_single``).

    Args:
        gt_boxes: (G, 4). gt_labels: (G,). gt_masks: (G, H, W) binary.
        featmap_sizes: L sizes (h_l, w_l) of the mask predictions.

    Returns:
        one dict per level: ``labels`` (S_l, S_l), ``pos_mask`` (S_l^2,) bool, ``mask_targets``
        (C_l, h_l, w_l) uint8 for the C_l positive cells in cell order.
    """
    device = gt_labels.device
    up_h, up_w = int(featmap_sizes[0][0]) * 4, int(featmap_sizes[0][1]) * 4
    areas = torch.sqrt((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))
    out = []
    for (lower, upper), stride, (h, w), num_grid in zip(scale_ranges, strides, featmap_sizes,
                                                        num_grids):
        h, w = int(h), int(w)
        labels = torch.full((num_grid, num_grid), num_classes, dtype=torch.int64, device=device)
        targets = torch.zeros((num_grid ** 2, h, w), dtype=torch.uint8, device=device)
        pos_mask = torch.zeros(num_grid ** 2, dtype=torch.bool, device=device)
        hit = ((areas >= lower) & (areas <= upper)).nonzero().flatten()
        if len(hit):
            boxes, hit_labels, masks = gt_boxes[hit], gt_labels[hit], gt_masks[hit]
            half_ws = 0.5 * (boxes[:, 2] - boxes[:, 0]) * pos_scale
            half_hs = 0.5 * (boxes[:, 3] - boxes[:, 1]) * pos_scale
            center_ws, center_hs = center_of_mass(masks)
            valid = masks.sum(dim=-1).sum(dim=-1) > 0
            for mask, label, half_h, half_w, c_h, c_w, ok in zip(
                    masks, hit_labels, half_hs, half_ws, center_hs, center_ws, valid):
                if not ok:
                    continue
                top, down, left, right = positive_cells(c_h, c_w, half_h, half_w, up_h, up_w,
                                                        num_grid)
                labels[top:down + 1, left:right + 1] = label
                small = rescale_mask(mask, 1.0 / (stride / 2))[:h, :w]
                cells = [i * num_grid + j for i in range(top, down + 1)
                         for j in range(left, right + 1)]
                targets[cells, :small.shape[0], :small.shape[1]] = small
                pos_mask[cells] = True
        out.append(dict(labels=labels, pos_mask=pos_mask, mask_targets=targets[pos_mask]))
    return out
