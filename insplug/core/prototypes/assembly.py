"""Bases x coefficients mask assembly (YOLACT) and its training loss.

Shapes: N instances, k prototypes, H x W prototype grid (e.g. stride 4 of the padded input).
Boxes are (N, 4) x1, y1, x2, y2 in *prototype-grid pixels* (image pixels / stride).

YOLACT (Bolya et al. 2019, Sec. 3.3-3.4): ``M = sigmoid(P C^T)`` for prototypes P (H, W, k)
and coefficients C (N, k), then the masks are zeroed outside their box (the GT box in
training, the predicted box at test time). The mask loss is the pixel-wise BCE against the
GT mask downsampled to the prototype grid, averaged over pixels and divided by the box's
area fraction of the grid (so small objects are not swamped), then averaged over positives.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['linear_combination', 'crop_masks', 'assemble_masks', 'proto_mask_loss',
           'downsample_gt_masks', 'semantic_targets_multilabel']


def linear_combination(protos: Tensor, coeffs: Tensor) -> Tensor:
    """Instance mask logits as linear combinations of prototypes.

    Args:
        protos: (k, H, W) prototypes of one image.
        coeffs: (N, k) coefficients.

    Returns:
        (N, H, W) logits.
    """
    if protos.dim() != 3 or coeffs.dim() != 2 or coeffs.size(1) != protos.size(0):
        raise ValueError(f'protos must be (k, H, W) and coeffs (N, k) with the same k, got '
                         f'{tuple(protos.shape)} and {tuple(coeffs.shape)}')
    k, h, w = protos.shape
    return (coeffs @ protos.reshape(k, h * w)).reshape(-1, h, w)


def crop_masks(masks: Tensor, boxes: Tensor, padding: int = 1) -> Tensor:
    """Zero every mask outside its box (YOLACT's crop; rounded outwards by ``padding``).

    Pixel column c (centre c + 0.5) is kept iff ``x1 - padding <= c < x2 + padding``, with the
    box bounds clamped to the grid; same for rows.

    Args:
        masks: (N, H, W) values (logits or probabilities).
        boxes: (N, 4) boxes in grid pixels.
        padding: pixels added on each side.

    Returns:
        (N, H, W) cropped masks (same dtype).
    """
    n, h, w = masks.shape
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2]) - padding
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2]) + padding
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3]) - padding
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3]) + padding
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None, :]
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None, :]
    keep_x = (cols >= x1[:, None].clamp(min=0)) & (cols < x2[:, None].clamp(max=w))  # (N, W)
    keep_y = (rows >= y1[:, None].clamp(min=0)) & (rows < y2[:, None].clamp(max=h))  # (N, H)
    inside = keep_y[:, :, None] & keep_x[:, None, :]
    return masks * inside.to(masks.dtype)


def assemble_masks(protos: Tensor, coeffs: Tensor, boxes: Optional[Tensor] = None,
                   padding: int = 1, activation: str = 'sigmoid') -> Tensor:
    """The shared mask-assembly helper: linear combination -> activation -> crop to box.

    Args:
        protos: (k, H, W) prototypes.
        coeffs: (N, k) per-instance coefficients.
        boxes: (N, 4) boxes in prototype-grid pixels, or None (no crop).
        padding: crop padding in grid pixels (YOLACT: 1).
        activation: 'sigmoid' (YOLACT) or None (return cropped logits).

    Returns:
        (N, H, W) mask probabilities (or logits with ``activation=None``).
    """
    masks = linear_combination(protos, coeffs)
    if activation == 'sigmoid':
        masks = masks.sigmoid()
    elif activation is not None:
        raise ValueError(f"activation must be 'sigmoid' or None, got {activation!r}")
    if boxes is not None:
        masks = crop_masks(masks, boxes, padding)
    return masks


@torch.no_grad()
def downsample_gt_masks(gt_masks: Tensor, size) -> Tensor:
    """GT masks -> binary targets on the prototype grid (bilinear resize, > 0.5).

    Args:
        gt_masks: (G, Hi, Wi) bool/float masks on the (padded) input image.
        size: (H, W) prototype grid size.

    Returns:
        (G, H, W) float {0, 1}.
    """
    if gt_masks.numel() == 0:
        return gt_masks.new_zeros((gt_masks.size(0), *size), dtype=torch.float32)
    resized = F.interpolate(gt_masks[None].float(), size=tuple(size), mode='bilinear',
                            align_corners=False)[0]
    return (resized > 0.5).float()


def proto_mask_loss(mask_probs: Tensor, mask_targets: Tensor, boxes: Tensor) -> Tensor:
    """YOLACT's box-area-normalised BCE of cropped assembled masks, one value per instance.

    Args:
        mask_probs: (N, H, W) cropped probabilities from :func:`assemble_masks`.
        mask_targets: (N, H, W) binary targets on the same grid.
        boxes: (N, 4) the boxes used for cropping, in grid pixels.

    Returns:
        (N,) losses: mean pixel BCE / (box_w / W) / (box_h / H). Average (or sum and divide by
        the number of positives) and weight (YOLACT: 6.125) outside.
    """
    n, h, w = mask_probs.shape
    bce = F.binary_cross_entropy(mask_probs.clamp(0, 1), mask_targets, reduction='none')
    box_w = ((boxes[:, 2] - boxes[:, 0]) / w).clamp(min=1.0 / w)
    box_h = ((boxes[:, 3] - boxes[:, 1]) / h).clamp(min=1.0 / h)
    return bce.flatten(1).mean(1) / box_w / box_h


@torch.no_grad()
def semantic_targets_multilabel(gt_masks: Tensor, labels: Tensor, num_classes: int,
                                size) -> Tensor:
    """YOLACT's auxiliary semantic-segmentation targets: per class, the union of that class's
    GT masks downsampled to ``size`` (bilinear, > 0.5).

    Args:
        gt_masks: (G, Hi, Wi) bool/float masks.
        labels: (G,) int classes in [0, C).
        num_classes: C.
        size: (h, w) output grid.

    Returns:
        (C, h, w) float {0, 1}.
    """
    small = downsample_gt_masks(gt_masks, size)  # (G, h, w)
    out = small.new_zeros((num_classes, *small.shape[-2:]))
    if small.size(0):
        out.index_reduce_(0, labels.long(), small, 'amax', include_self=True)
    return out
