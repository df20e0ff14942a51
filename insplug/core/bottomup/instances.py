"""From pixel clusters to instances: class labels, boxes, resizing.

Shape shorthand: N instances, K classes, P = H * W pixels, H/W mask size.
"""
from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes

__all__ = ['majority_vote_labels', 'masks_to_boxes', 'resize_masks', 'scatter_masks',
           'select_instances']


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


def select_instances(masks: Tensor, labels: Tensor, scores: Tensor, image_size: Sequence[int],
                     out_size: Optional[Sequence[int]] = None, max_per_img: int = 100
                     ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clusters of one image (on the padded batch input) -> its final instances.

    Crops the masks to the un-padded image, keeps the ``max_per_img`` best scores, resizes the
    masks to ``out_size`` (:func:`resize_masks`), drops masks left empty and computes each
    mask's tight box.

    Args:
        masks: (N, H_pad, W_pad) bool.
        labels: (N,) long.
        scores: (N,) float.
        image_size: (h, w) of the image inside the padded input (h <= H_pad, w <= W_pad).
        out_size: (H', W') output size, or None to keep (h, w).
        max_per_img: instances kept at most.

    Returns:
        masks (N', H', W') bool, labels (N',), scores (N',) sorted by decreasing score,
        boxes (N', 4) float x1, y1, x2, y2 (:func:`masks_to_boxes`).
    """
    h, w = int(image_size[0]), int(image_size[1])
    masks = masks[:, :h, :w]
    order = scores.argsort(descending=True)[:max_per_img]
    masks, labels, scores = masks[order], labels[order], scores[order]
    if out_size is not None:
        masks = resize_masks(masks, tuple(int(x) for x in out_size))
    keep = masks.flatten(1).any(1)
    masks, labels, scores = masks[keep], labels[keep], scores[keep]
    return masks, labels, scores, masks_to_boxes(masks)
