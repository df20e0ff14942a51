"""CenterMask's RoI plumbing: adaptive level assignment, multi-level RoIAlign, mask targets,
proposal matching and mask pasting.

Shape shorthand: N RoIs, G ground-truth objects, L pyramid levels, C channels, M mask side
(28), S pooled side (14), H x W image.

Adaptive RoI assignment (CenterMask eq. 2): a box of area ``a`` in an image of area ``A`` goes
to level ``k = ceil(k_max - log2(A / a + eps))`` (eps = float64 machine epsilon, as centermask2's
``assign_boxes_to_levels_by_ratio``), clamped to [k_min, k_max]; a box covering the whole image
thus uses the coarsest level, whatever the input resolution. ``A`` is the size of the resized
image before padding.

Mask targets: polygon annotations are rasterised inside each box as detectron2's
``PolygonMasks.crop_and_resize`` does (what centermask2 trains with on COCO); bitmaps are
resampled with RoIAlign (aligned) and thresholded at 0.5, as detectron2's ``BitMasks``.
"""
import math
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou, roi_align

from insplug.core.postprocess.paste import paste_masks_in_boxes


def adaptive_roi_levels(boxes: Tensor, image_areas: Tensor, min_level: int,
                        max_level: int) -> Tensor:
    """Pyramid level of each RoI from its area relative to its image.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        image_areas: (N,) area (H * W) of each RoI's image.
        min_level, max_level: finest and coarsest level (3 and 5 for P3-P5).

    Returns:
        (N,) long level index in [0, max_level - min_level].
    """
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # a zero-area box gives log2(inf) = inf -> the finest level, as in centermask2
    level = torch.ceil(max_level - torch.log2(image_areas.to(area) / area + sys.float_info.epsilon))
    return level.clamp(min_level, max_level).long() - min_level


def multilevel_roi_align(features: Sequence[Tensor], rois: Tensor, levels: Tensor,
                         strides: Sequence[int], output_size: int,
                         sampling_ratio: int = 0) -> Tensor:
    """RoIAlign each RoI from its own level.

    Args:
        features: L maps (B, C, H_l, W_l).
        rois: (N, 5) batch index, x1, y1, x2, y2 in image coordinates.
        levels: (N,) level index of each RoI.
        strides: L strides.
        output_size: S.
        sampling_ratio: RoIAlign samples per bin (0: adaptive).

    Returns:
        (N, C, S, S).
    """
    out = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    for level, (feat, stride) in enumerate(zip(features, strides)):
        index = (levels == level).nonzero(as_tuple=True)[0]
        if index.numel():
            out[index] = roi_align(feat, rois[index].to(feat.dtype), output_size, 1.0 / stride,
                                   sampling_ratio, aligned=True)
    return out


def boxes_to_rois(boxes: List[Tensor]) -> Tensor:
    """Per-image boxes to one (N, 5) tensor of batch index, x1, y1, x2, y2."""
    return torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], 1)
                      for i, b in enumerate(boxes)])


def mask_targets(gt_masks: Tensor, gt_index: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Ground-truth masks cropped to RoIs and resampled to ``size x size``.

    Args:
        gt_masks: (G, H, W) bool/float masks of one image.
        gt_index: (N,) object of each RoI.
        boxes: (N, 4) RoI boxes.
        size: M.

    Returns:
        (N, M, M) float in {0, 1} (bilinear samples thresholded at 0.5).
    """
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat([gt_index[:, None].to(boxes), boxes], 1)
    crops = roi_align(gt_masks[:, None].to(boxes), rois, size, 1.0, 0, aligned=True)
    return (crops[:, 0] >= 0.5).to(boxes)


def polygon_mask_targets(polygons, boxes: Tensor, size: int) -> Tensor:
    """Polygons rasterised inside RoIs at ``size x size`` (detectron2's
    ``rasterize_polygons_within_box``: shift to the box origin, scale by
    ``size / max(side, 0.1)``, rasterise with pycocotools).

    Args:
        polygons: N objects, each a list of flat (2 P,) arrays in image coordinates.
        boxes: (N, 4) RoI boxes.
        size: M.

    Returns:
        (N, M, M) float in {0, 1} on ``boxes``' device.
    """
    import pycocotools.mask as mask_utils
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    out = np.zeros((len(polygons), size, size), dtype=np.float32)
    for i, (obj, box) in enumerate(zip(polygons, boxes.detach().cpu().numpy())):
        if len(obj) == 0:
            continue
        w, h = box[2] - box[0], box[3] - box[1]
        ratio_h, ratio_w = size / max(h, 0.1), size / max(w, 0.1)
        scaled = []
        for p in obj:
            p = np.asarray(p, dtype=np.float64).copy()
            p[0::2] = (p[0::2] - box[0]) * ratio_w
            p[1::2] = (p[1::2] - box[1]) * ratio_h
            scaled.append(p)
        rle = mask_utils.merge(mask_utils.frPyObjects(scaled, size, size))
        out[i] = mask_utils.decode(rle)
    return torch.from_numpy(out).to(boxes)


def clip_nonempty(boxes: Tensor, height: int, width: int):
    """Clip boxes to the image and flag those with positive width and height (detectron2's
    ``Boxes.clip`` + ``nonempty``, applied before pasting masks).

    Args:
        boxes: (N, 4). height, width: image size.

    Returns:
        (N, 4) clipped boxes and (N,) bool keep flags.
    """
    x1, y1, x2, y2 = boxes.unbind(1)
    clipped = torch.stack([x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width),
                           y2.clamp(0, height)], dim=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def match_proposals(proposals: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """Match proposals to objects by box IoU.

    Args:
        proposals: (N, 4).
        gt_boxes: (G, 4).
        iou_threshold: minimum IoU of a positive.

    Returns:
        (N,) long object index, -1 for background.
    """
    if gt_boxes.shape[0] == 0 or proposals.shape[0] == 0:
        return torch.full((proposals.shape[0],), -1, dtype=torch.long, device=proposals.device)
    iou, index = box_iou(proposals, gt_boxes).max(dim=1)
    return torch.where(iou >= iou_threshold, index, torch.full_like(index, -1))


def paste_masks(probs: Tensor, boxes: Tensor, height: int, width: int,
                threshold: Optional[float] = None) -> Tensor:
    """Paste RoI mask probabilities into the image by bilinear sampling (detectron2's
    ``paste_masks_in_image`` geometry, in the probabilities' dtype), with the shared windowed
    paster :func:`insplug.core.postprocess.paste.paste_masks_in_boxes`.

    Args:
        probs: (N, M, M) mask probabilities in box coordinates.
        boxes: (N, 4) boxes in image coordinates.
        height, width: output size.
        threshold: None returns probabilities; a value returns ``probabilities >= threshold``.

    Returns:
        (N, H, W) probabilities (0 outside the boxes), or bool masks.
    """
    return paste_masks_in_boxes(probs, boxes, height, width, threshold)


def subsample_positives(index: Tensor, max_num: int, generator=None) -> Tensor:
    """Random subset of at most ``max_num`` positions where ``index >= 0``.

    Args:
        index: (N,) object index or -1.
        max_num: cap (<= 0: keep all).

    Returns:
        (P,) long positions.
    """
    pos = (index >= 0).nonzero(as_tuple=True)[0]
    if 0 < max_num < pos.numel():
        pos = pos[torch.randperm(pos.numel(), generator=generator, device=pos.device)[:max_num]]
    return pos


def canonical_levels(strides: Sequence[int]) -> tuple:
    """(min_level, max_level) of power-of-two strides, e.g. (3, 5) for 8, 16, 32."""
    return int(round(math.log2(strides[0]))), int(round(math.log2(strides[-1])))
