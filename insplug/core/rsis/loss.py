"""RSIS training targets and losses (release: src/train.py ``runIter``, src/utils/hungarian.py,
src/utils/objectives.py, src/dataloader/dataset.py ``sequence_from_masks``).

Shapes: B images, T decoded steps, K1 class outputs (index 0 unused by targets), H x W the
input size, M_b GT instances of image b (after truncation to ``max_gt``).

* GT sequence: instances sorted by area, largest first (ties: the later instance first, as
  ``np.argsort(size)[::-1]``), truncated to ``max_gt`` (release ``gt_maxseqlen`` 20).
* Steps decoded in training: ``min(T_limit, max_b M_b + 1)`` (the release stops one step after
  the last step where any image still has an instance); ``T_limit`` is the curriculum's limit.
* Matching (per image): the first ``min(T, M_b)`` steps are matched to the M_b GTs by the
  Hungarian algorithm on the soft-IoU cost ``1 - IoU(sigmoid(mask), gt)``
  (:mod:`insplug.core.recurrent.matching`; the release masks every other pair with cost 10).
* mask loss: ``1 - soft IoU`` of each matched pair, mean over every matched pair of the batch.
* class loss: ``-log softmax(class_logits)[label]`` of each matched pair, same mean (the
  release takes ``log`` of the decoder's softmax).
* stop loss: balanced BCE with logits on step t's stop logit against ``t < M_b`` (1: an object
  follows; 0: stop), weights ``(1 - w)`` on positives and ``w`` on negatives
  (``stop_balance_weight``, 0.5), over the steps ``t < M_b`` plus the end step ``t = M_b``
  when ``M_b < max_gt``; mean over those (b, t).
* total: ``iou_weight * mask + class_weight * class + stop_weight * stop`` (release 1.0, 0.1,
  0.5; class and stop terms switched on by the schedule).
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.recurrent.matching import matched_soft_iou_loss


def sequence_order(masks: Tensor, max_gt: int) -> Tensor:
    """Indices of the GT sequence: by area descending, ties later-first, at most ``max_gt``.

    Args:
        masks: (M, H, W) binary.

    Returns:
        (min(M, max_gt),) int64 indices into the M instances.
    """
    area = masks.flatten(1).sum(1).double().cpu()
    order = torch.argsort(area, stable=True).flip(0)
    return order[:max_gt].to(masks.device)


def train_num_steps(num_gts: Sequence[int], max_steps: int) -> int:
    """Steps the release decodes in training: ``min(max_steps, max(num_gts) + 1)``."""
    return min(max_steps, (max(num_gts) if len(num_gts) else 0) + 1)


def stop_targets(num_gts: Sequence[int], num_steps: int, max_gt: int,
                 device=None) -> Tuple[Tensor, Tensor]:
    """Stop targets and their weights (release ``sw_mask`` / ``sw_class``).

    Args:
        num_gts: M_b of each image (after truncation). num_steps: T. max_gt: release
            ``gt_maxseqlen``.

    Returns:
        targets (B, T) float, 1 where t < M_b; valid (B, T) bool, t <= M_b (t = M_b only when
        M_b < max_gt).
    """
    t = torch.arange(num_steps, device=device)[None, :]
    m = torch.as_tensor(list(num_gts), device=device)[:, None]
    targets = (t < m).float()
    valid = (t < m) | ((t == m) & (m < max_gt))
    return targets, valid


def balanced_bce_with_logits(logits: Tensor, targets: Tensor, balance_weight: float) -> Tensor:
    """Release ``StableBalancedMaskedBCE`` per element: ``(1 - w) * bce`` on positives and
    ``w * bce`` on negatives.

    Args:
        logits, targets: same shape (...).

    Returns:
        (...) element losses.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    return loss * ((1 - balance_weight) * targets + balance_weight * (1 - targets))


def rsis_losses(mask_logits: Tensor, class_logits: Tensor, stop_logits: Tensor,
                gt_masks: List[Tensor], gt_labels: List[Tensor], max_gt: int = 20,
                stop_balance_weight: float = 0.5, eps: float = 1e-6) -> Dict[str, Tensor]:
    """Unweighted RSIS loss terms.

    Args:
        mask_logits: (B, T, H, W). class_logits: (B, T, K1). stop_logits: (B, T).
        gt_masks: B tensors (M_b, H, W), already in sequence order and truncated
            (:func:`sequence_order`). gt_labels: B tensors (M_b,) in 1..K1-1.
        max_gt: release ``gt_maxseqlen`` (decides whether an end step is supervised).
        stop_balance_weight: w of :func:`balanced_bce_with_logits`.
        eps: soft-IoU union epsilon.

    Returns:
        dict ``mask`` (soft-IoU), ``cls`` (NLL), ``stop`` (balanced BCE) scalars, and
        ``assignments``: B (pred_idx (K_b,), gt_idx (K_b,)) pairs. Terms without any supervised
        element are 0 (the release gives NaN).
    """
    b, t = mask_logits.shape[:2]
    probs = torch.sigmoid(mask_logits).flatten(2)
    mask_terms, cls_terms, assignments = [], [], []
    for i in range(b):
        m = gt_masks[i].shape[0]
        losses, pi, gi = matched_soft_iou_loss(probs[i], gt_masks[i].flatten(1).to(probs.dtype),
                                               num_steps=min(t, m), eps=eps)
        mask_terms.append(losses)
        logp = F.log_softmax(class_logits[i, pi], -1)
        cls_terms.append(-logp.gather(1, gt_labels[i][gi].long()[:, None])[:, 0])
        assignments.append((pi, gi))
    mask_terms = torch.cat(mask_terms)
    cls_terms = torch.cat(cls_terms)
    targets, valid = stop_targets([g.shape[0] for g in gt_masks], t, max_gt, stop_logits.device)
    stop_terms = balanced_bce_with_logits(stop_logits, targets.to(stop_logits.dtype),
                                          stop_balance_weight)[valid]

    def mean(x, like):
        return x.mean() if x.numel() else like.sum() * 0

    return dict(mask=mean(mask_terms, mask_logits), cls=mean(cls_terms, class_logits),
                stop=mean(stop_terms, stop_logits), assignments=assignments)
