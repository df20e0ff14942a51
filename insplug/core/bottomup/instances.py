"""From pixel clusters to instances: class labels, boxes, resizing.

Shape shorthand: N instances, K classes, P = H * W pixels, H/W mask size.
"""
import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes

__all__ = ['majority_vote_labels', 'masks_to_boxes', 'resize_masks', 'scatter_masks']


def majority_vote_labels(masks: Tensor, class_scores: Tensor) -> Tensor:
    """Class of each instance by majority vote of its pixels' arg-max classes.

    Args:
        masks: (N, P) bool.
        class_scores: (K, P) float per-pixel class scores (logits or probabilities).

    Returns:
        (N,) long in [0, K) (ties: lowest class index).
    """
    num_classes = class_scores.shape[0]
    pixel_class = F.one_hot(class_scores.argmax(0), num_classes).to(class_scores.dtype)  # P, K
    return (masks.to(class_scores.dtype) @ pixel_class).argmax(1)


def resize_masks(masks: Tensor, size) -> Tensor:
    """Bilinear resize of binary masks, thresholded at 0.5.

    Args:
        masks: (N, H, W) bool.
        size: (H', W').

    Returns:
        (N, H', W') bool.
    """
    if masks.shape[0] == 0 or tuple(masks.shape[-2:]) == tuple(size):
        return masks.new_zeros((masks.shape[0], *size)) if masks.shape[0] == 0 else masks
    resized = F.interpolate(masks[None].float(), size=tuple(size), mode='bilinear',
                            align_corners=False)[0]
    return resized > 0.5


def scatter_masks(sub_masks: Tensor, selected: Tensor) -> Tensor:
    """Masks over a subset of pixels back onto all pixels.

    Args:
        sub_masks: (N, P') bool over the selected pixels.
        selected: (P,) bool, P' of them True.

    Returns:
        (N, P) bool.
    """
    full = sub_masks.new_zeros(sub_masks.shape[0], selected.shape[0])
    full[:, selected] = sub_masks
    return full
