"""Input resizing, stop rule and instance output of recurrent attention.

Shapes: B images, C channels, (Hp, Wp) a padded batch, (h, w) one image's valid size,
(H, W) the fixed model input, T time steps, K classes, N kept instances, (Ho, Wo) the output
(original image) size.

The model runs at one fixed input size (the release resizes CVPPP to 224 x 224, KITTI to
128 x 448, Cityscapes to 256 x 512); the adapters resize each image's valid region to it and
the masks back to the original size.

Output as released (``full_model_eval.py`` with ``utils/postprocess.py``):
``apply_confidence`` weights every soft mask by its step's score; the weighted maps are
upsampled bilinearly to the original size; ``apply_one_label`` keeps each pixel only in the step
of largest weighted value (over all T steps); ``apply_threshold`` binarises at 0.3. The stop
rule ``s > 0.5`` (``apply_confidence``'s hard score) decides which steps are instances. The
paper's reading, stop at the first step whose score drops below 0.5, is ``stop_rule=
'first_below'``. The release's bilateral filter after upsampling is not applied.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_to_input(images: Tensor, valid_sizes: Sequence[Sequence[int]],
                    input_size: Sequence[int]) -> Tensor:
    """Each image's valid region resized (bilinear) to the model input.

    Args:
        images: (B, C, Hp, Wp). valid_sizes: B (h, w). input_size: (H, W).

    Returns:
        (B, C, H, W).
    """
    size = (int(input_size[0]), int(input_size[1]))
    if all(tuple(v) == size for v in valid_sizes) and tuple(images.shape[-2:]) == size:
        return images
    return torch.cat([F.interpolate(img[None, :, :int(h), :int(w)], size=size, mode='bilinear',
                                    align_corners=False)
                      for img, (h, w) in zip(images, valid_sizes)])


def masks_to_input(masks: Tensor, valid_size: Sequence[int], input_size: Sequence[int]) -> Tensor:
    """Binary masks of one image's valid region resized (nearest) to the model input.

    Args:
        masks: (M, h', w') with h' >= h, w' >= w. valid_size: (h, w). input_size: (H, W).

    Returns:
        (M, H, W) float {0, 1}.
    """
    h, w = int(valid_size[0]), int(valid_size[1])
    masks = masks[:, :h, :w].float()
    size = (int(input_size[0]), int(input_size[1]))
    if masks.shape[0] == 0 or tuple(masks.shape[-2:]) == size:
        return masks.new_zeros(0, *size) if masks.shape[0] == 0 else masks
    return F.interpolate(masks[None], size=size, mode='nearest')[0]


def stop_mask(scores: Tensor, threshold: float = 0.5, stop_rule: str = 'threshold') -> Tensor:
    """Which steps are instances.

    Args:
        scores: (..., T) in (0, 1).
        threshold: release 0.5.
        stop_rule: 'threshold' (release: every step with score > threshold) or 'first_below'
            (paper: steps before the first score <= threshold).

    Returns:
        (..., T) bool.
    """
    keep = scores > threshold
    if stop_rule == 'first_below':
        keep = torch.cummin(keep.to(torch.uint8), dim=-1).values.bool()
    elif stop_rule != 'threshold':
        raise ValueError(f"stop_rule must be 'threshold' or 'first_below', got {stop_rule!r}")
    return keep


def instances_from_steps(masks: Tensor, scores: Tensor, cls_logits: Optional[Tensor] = None,
                         out_size: Optional[Sequence[int]] = None,
                         score_threshold: float = 0.5, mask_threshold: float = 0.3,
                         stop_rule: str = 'threshold',
                         one_label: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """Instances of one image from its T soft masks and scores.

    Args:
        masks: (T, H, W) soft masks at the model input size.
        scores: (T,). cls_logits: (T, K) or None (class 0).
        out_size: (Ho, Wo) or None (keep H x W).
        score_threshold, stop_rule: see :func:`stop_mask`.
        mask_threshold: release 0.3.
        one_label: release True (each pixel in at most one instance).

    Returns:
        (masks (N, Ho, Wo) bool, scores (N,), labels (N,) int64): the steps the stop rule keeps,
        in step order; as released, a kept step is an instance even if no pixel of its mask
        passes the threshold (an empty mask).
    """
    weighted = masks * scores[:, None, None]
    if out_size is not None and tuple(weighted.shape[-2:]) != tuple(out_size):
        weighted = F.interpolate(weighted[None], size=tuple(int(s) for s in out_size),
                                 mode='bilinear', align_corners=False)[0]
    if one_label and weighted.shape[0]:
        winner = weighted.argmax(0, keepdim=True)
        steps = torch.arange(weighted.shape[0], device=weighted.device).view(-1, 1, 1)
        weighted = torch.where(winner == steps, weighted, torch.zeros_like(weighted))
    binary = weighted > mask_threshold
    keep = stop_mask(scores, score_threshold, stop_rule)
    labels = cls_logits.argmax(-1) if cls_logits is not None else \
        torch.zeros_like(scores, dtype=torch.long)
    return binary[keep], scores[keep], labels[keep].long()
