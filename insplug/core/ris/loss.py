"""RIS matching loss (release plants_learning/MatchCriterion.lua, experiment.lua; paper eq. 4).

Shapes: T steps run for the image, M GT instances, P pixels of the feature grid (GTs are
nearest-downsampled to it: the release scales its labels with ``image.scale(..., 'simple')``).

For one image with ``T = min(seq_length, M + 1)`` steps (one step past the last object):
the first ``min(T, M)`` steps are matched one-to-one to the GTs by the Hungarian algorithm on
``-IoU(m_t, y_j) + lambda * BCE(s_t, 1)`` (the BCE term is constant along a row, so this is the
soft-IoU matching of :mod:`insplug.core.recurrent.matching`, without epsilon), and

    loss = [ sum_matched (-IoU(m_t, y_sigma(t)) + lambda * BCE(s_t, 1))
             + lambda * sum_{M <= t < T} BCE(s_t, 0) ] / T

with ``IoU(m, y) = sum(m y) / (sum(m) + sum(y) - sum(m y))`` and s_t the confidence
(release ``lambda`` 1). The mask term is the negative IoU (the loss can be negative).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.recurrent.matching import matched_soft_iou_loss


def ris_train_steps(num_gt: int, seq_length: int) -> int:
    """Steps run for an image in training: ``min(seq_length, M + 1)``."""
    return min(seq_length, num_gt + 1)


def ris_loss_single(mask_probs: Tensor, conf_logits: Tensor, gt_masks: Tensor,
                    lam: float = 1.0, class_logits: Optional[Tensor] = None,
                    gt_labels: Optional[Tensor] = None,
                    class_weight: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
    """RIS loss of one image (already divided by T).

    Args:
        mask_probs: (T, P) in (0, 1). conf_logits: (T,). gt_masks: (M, P) binary.
        lam: release ``lambda``.
        class_logits: (T, K) of the optional class branch (insplug extension) with
            gt_labels (M,) in 0..K-1: adds ``class_weight * CE`` of each matched step
            (summed, divided by T like the other terms).

    Returns:
        (loss scalar, pred_idx (K_m,), gt_idx (K_m,)).
    """
    t, m = mask_probs.shape[0], gt_masks.shape[0]
    k = min(t, m)
    iou_loss, pi, gi = matched_soft_iou_loss(mask_probs, gt_masks.to(mask_probs.dtype),
                                             num_steps=k, eps=0.0)
    targets = (torch.arange(t, device=conf_logits.device) < m).to(conf_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(conf_logits, targets, reduction='sum')
    loss = (iou_loss - 1).sum() + lam * bce
    if class_logits is not None:
        ce = F.cross_entropy(class_logits[pi], gt_labels[gi].long(), reduction='sum')
        loss = loss + class_weight * ce
    return loss / t, pi, gi
