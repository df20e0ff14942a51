"""YOLACT's mask targets on the prototype grid (the assembly, crop and losses themselves are
the release's, in :mod:`insplug.core.prototypes.yolact`).

Shapes: G ground-truth objects, C classes, Hi x Wi input image, H x W prototype grid.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['downsample_gt_masks', 'semantic_targets_multilabel']


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
