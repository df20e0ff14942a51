"""Soft IoU between sequential soft masks and GT masks, Hungarian matching and the matched loss.

Shapes: T predicted masks (one per recurrent step), M GT masks of one image, P pixels per mask
(masks are flattened: pass ``masks.flatten(1)``), K matched pairs.

Soft IoU (RSIS, src/utils/hungarian.py ``softIoU``; RIS, Romera-Paredes & Torr 2016, eq. 3):
``iou(p, y) = sum(p * y) / (sum(p + y - p * y) + eps)`` with p in [0, 1] (sigmoid of the mask
logits) and y in {0, 1}; the cost of a pair is ``1 - iou``. Predictions and GTs are matched
one-to-one by the Hungarian algorithm on this cost (``insplug.core.matchers.hungarian``), and the
matched loss is ``1 - iou`` of each matched pair.

RSIS matches only the first ``min(T, M)`` steps (step t is supervised iff t < M: the GT
sequence's own valid flags mark the pairs, every other pair costs 10 in the release); pass
``num_steps=min(T, M)``. Recurrent attention (Ren & Zemel 2017) does the same: its release
masks both axes with the valid-GT flags, so only the first M steps are matched and supervised.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from insplug.core.matchers.hungarian import linear_assignment


def pairwise_soft_iou(probs: Tensor, gt_masks: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft IoU of every (prediction, GT) pair.

    Args:
        probs: (T, P) soft masks in [0, 1].
        gt_masks: (M, P) binary (or soft) GT masks.
        eps: added to the union (RSIS: 1e-6).

    Returns:
        (T, M) soft IoU.
    """
    gt_masks = gt_masks.to(probs.dtype)
    inter = probs @ gt_masks.t()
    union = probs.sum(1, keepdim=True) + gt_masks.sum(1)[None, :] - inter
    return inter / (union + eps)


def paired_soft_iou(probs: Tensor, gt_masks: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft IoU of aligned pairs (row k of ``probs`` with row k of ``gt_masks``).

    Args:
        probs: (K, P) in [0, 1]. gt_masks: (K, P). eps: added to the union.

    Returns:
        (K,) soft IoU.
    """
    gt_masks = gt_masks.to(probs.dtype)
    inter = (probs * gt_masks).sum(1)
    union = (probs + gt_masks - probs * gt_masks).sum(1)
    return inter / (union + eps)


def match_soft_iou(probs: Tensor, gt_masks: Tensor, num_steps: Optional[int] = None,
                   eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Hungarian matching of predictions to GTs minimising the summed soft-IoU cost.

    Args:
        probs: (T, P) soft masks in [0, 1].
        gt_masks: (M, P) GT masks.
        num_steps: only the first ``num_steps`` predictions take part (RSIS: ``min(T, M)``);
            None = all T.
        eps: soft-IoU union epsilon.

    Returns:
        (pred_idx, gt_idx): two (K,) int64 tensors, K = min(num_steps, M), pred_idx ascending.
    """
    if num_steps is not None:
        probs = probs[:num_steps]
    with torch.no_grad():
        cost = 1 - pairwise_soft_iou(probs, gt_masks, eps)
    return linear_assignment(cost)


def matched_soft_iou_loss(probs: Tensor, gt_masks: Tensor, num_steps: Optional[int] = None,
                          eps: float = 1e-6) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-pair soft-IoU loss ``1 - iou`` after Hungarian matching.

    Args:
        probs: (T, P) soft masks in [0, 1] (differentiable).
        gt_masks: (M, P) GT masks.
        num_steps: see :func:`match_soft_iou`.
        eps: soft-IoU union epsilon.

    Returns:
        (losses, pred_idx, gt_idx): losses (K,) ``1 - iou(probs[pred_idx[k]], gt[gt_idx[k]])``;
        the caller reduces (RSIS: mean over every matched pair of the batch).
    """
    pred_idx, gt_idx = match_soft_iou(probs, gt_masks, num_steps, eps)
    losses = 1 - paired_soft_iou(probs[pred_idx], gt_masks[gt_idx], eps)
    return losses, pred_idx, gt_idx
