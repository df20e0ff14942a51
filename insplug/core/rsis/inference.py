"""RSIS inference (release src/eval.py ``_create_json`` with src/test.py ``test``).

Shapes: T decoded steps (release ``maxseqlen``), K foreground classes (class outputs K1 = K+1,
index 0 is the end-of-sequence slot and is never emitted), H x W the output size, N = kept
steps x K detections.

All T steps are decoded. A step is kept when its objectness ``sigmoid(stop_logit)`` is at least
``stop_thr`` (0.5; the release skips, not stops, at a low step). Each kept step's mask
(``sigmoid(mask_logit) > mask_thr``, 0.5, after resizing the probabilities) is emitted once per foreground class with score
``softmax(class)[k] * objectness`` (COCO evaluation style of the release); masks smaller than
``min_size * H * W`` pixels (0.001) are dropped.
"""
from typing import Tuple

import torch
from torch import Tensor


def rsis_postprocess(mask_probs: Tensor, class_logits: Tensor, stop_logits: Tensor,
                     stop_thr: float = 0.5, mask_thr: float = 0.5, min_size: float = 0.001,
                     max_per_img: int = 100) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of one image.

    Args:
        mask_probs: (T, H, W) mask probabilities resized to the output size (the release
            resizes the probabilities, then thresholds). class_logits: (T, K1). stop_logits: (T,).
        stop_thr, mask_thr, min_size: release ``stop_th``, ``mask_th``, ``min_size``.
        max_per_img: keep the highest-scoring N detections (release COCO ``max_dets`` 100).

    Returns:
        masks (N, H, W) bool, scores (N,), labels (N,) int64 in 0..K-1.
    """
    t, h, w = mask_probs.shape
    objectness = torch.sigmoid(stop_logits)
    class_probs = torch.softmax(class_logits, -1)[:, 1:]
    masks = mask_probs > mask_thr
    keep = (objectness >= stop_thr) & (masks.flatten(1).sum(1) >= min_size * h * w)
    k = class_probs.shape[1]
    scores = (class_probs * objectness[:, None])[keep].flatten()
    steps = torch.arange(t, device=mask_probs.device)[keep].repeat_interleave(k)
    labels = torch.arange(k, device=mask_probs.device).repeat(int(keep.sum()))
    order = torch.argsort(scores, descending=True, stable=True)[:max_per_img]
    return masks[steps[order]], scores[order], labels[order]
