"""RIS inference (release plants_learning/infer_example.lua).

Shapes: T steps (release 30), h x w the mask size, N kept steps.

Steps run in order and the sequence stops at the first step whose confidence
``sigmoid(conf_logit)`` is below ``stop_thr`` (0.5); every earlier step is an instance, its
mask ``sigmoid(mask_logit) > mask_thr`` (release 0.9, the threshold of its label canvas) and
its score the confidence (times the class probability with the optional class branch).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def ris_postprocess(mask_probs: Tensor, conf_logits: Tensor,
                    class_logits: Optional[Tensor] = None, stop_thr: float = 0.5,
                    mask_thr: float = 0.9) -> Tuple[Tensor, Tensor, Tensor]:
    """Instances of one image.

    Args:
        mask_probs: (T, H, W) mask probabilities (at the output size). conf_logits: (T,).
        class_logits: (T, K) or None (class-agnostic: label 0).

    Returns:
        masks (N, H, W) bool, scores (N,), labels (N,) int64; N = the steps before the first
        one below ``stop_thr``.
    """
    conf = torch.sigmoid(conf_logits)
    keep = torch.cumprod((conf >= stop_thr).long(), 0).bool()
    scores = conf
    labels = torch.zeros_like(conf, dtype=torch.long)
    if class_logits is not None:
        prob, labels = torch.softmax(class_logits, -1).max(-1)
        scores = conf * prob
    return mask_probs[keep] > mask_thr, scores[keep], labels[keep]
