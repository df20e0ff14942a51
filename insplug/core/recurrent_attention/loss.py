"""Losses and training-time matching of recurrent attention (Ren & Zemel, CVPR 2017).

Shapes: B images, T time steps (the model's timespan), M_b ground-truth instances of image b
(M_b <= T), P = H x W pixels.

As released (renmengye/rec-attend-public, ``full_model.py`` / ``modellib.py``):

* soft IoU ``sum(a b) / sum(a + b - a b + eps)`` with eps = 1e-5 PER PIXEL (``f_union``), i.e.
  ``union + 1e-5 P``;
* Hungarian matching (``f_segm_match``) of the masked IoU matrix ``iou * s_gt[None] *
  s_gt[:, None]``: the valid-GT flags mask BOTH axes, so only the first M_b steps take part and
  step t is supervised iff t < M_b;
* segmentation and box losses: ``-(sum of matched IoU) / max(1, M_b)`` averaged over images
  (``segm_loss_fn = box_loss_fn = 'iou'``); insplug reports ``1 - IoU`` instead, the same
  gradient (see docs/deviations/recurrent_attention.md);
* score loss (``f_conf_loss`` with ``use_cum_min``): binary cross-entropy of the cumulative
  minimum of the scores against 1 on matched steps and of the reversed cumulative maximum
  against 0 on the others (eps 1e-5 inside the logs), summed and divided by ``B T``;
* greedy matching for ground-truth mixing (``f_greedy_match``) and its schedule
  (``gt_knob_prob``: ``min(1, base * decay^(max(0, step - offset) / steps_per_decay) *
  (1 + log(1 + 3 t)))``).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from insplug.core.recurrent.matching import match_soft_iou, paired_soft_iou

#: per-pixel epsilon of the release's soft union (modellib.f_union)
UNION_EPS_PER_PIXEL = 1e-5
#: epsilon inside the logs of the release's score cross-entropy (modellib.f_bce_minmax)
BCE_EPS = 1e-5


def union_eps(num_pixels: int) -> float:
    """The release's soft-union epsilon for masks of ``num_pixels`` pixels (1e-5 per pixel)."""
    return UNION_EPS_PER_PIXEL * num_pixels


def match_steps(probs: Tensor, gt_masks: Tensor) -> Tuple[Tensor, Tensor]:
    """Hungarian matching of the first M steps to the M GT masks of one image (``f_segm_match``).

    Args:
        probs: (T, P) soft masks (or soft boxes). gt_masks: (M, P), M <= T.

    Returns:
        (step_idx, gt_idx): (K,) int64 each, K = min(T, M), step_idx ascending.
    """
    return match_soft_iou(probs, gt_masks, num_steps=min(probs.shape[0], gt_masks.shape[0]),
                          eps=union_eps(probs.shape[1]))


def matched_iou_loss(probs: Tensor, gt_masks: Sequence[Tensor],
                     matches: Optional[List[Tuple[Tensor, Tensor]]] = None
                     ) -> Tuple[Tensor, List[Tuple[Tensor, Tensor]]]:
    """Matched soft-IoU loss, ``mean_b [sum_k (1 - iou_k) / max(1, M_b)]``.

    Args:
        probs: (B, T, P) soft masks (or soft boxes), differentiable.
        gt_masks: B tensors (M_b, P).
        matches: optional precomputed :func:`match_steps` results, one per image.

    Returns:
        (loss scalar, the B (step_idx, gt_idx) matches used).
    """
    eps = union_eps(probs.shape[-1])
    total = probs.new_zeros(())
    used = []
    for b, gt in enumerate(gt_masks):
        match = match_steps(probs[b], gt) if matches is None else matches[b]
        step_idx, gt_idx = match
        if step_idx.numel():
            iou = paired_soft_iou(probs[b, step_idx], gt[gt_idx], eps)
            total = total + (1 - iou).sum() / max(1, gt.shape[0])
        used.append(match)
    return total / max(1, len(gt_masks)), used


def cumulative_min(scores: Tensor) -> Tensor:
    """(B, T) -> (B, T) running minimum from the first step (``f_cum_min``)."""
    return torch.cummin(scores, dim=1).values


def cumulative_max_reversed(scores: Tensor) -> Tensor:
    """(B, T) -> (B, T): out[:, t] = max(scores[:, t:]) (``f_cum_max``)."""
    return torch.cummax(scores.flip(1), dim=1).values.flip(1)


def score_loss(scores: Tensor, targets: Tensor, use_cum_min: bool = True) -> Tensor:
    """Monotonic score loss (``f_conf_loss``).

    Args:
        scores: (B, T) in (0, 1).
        targets: (B, T) in {0, 1}: 1 on matched steps.
        use_cum_min: True (release): BCE of the cumulative min against 1 and of the reversed
            cumulative max against 0; False: plain BCE.

    Returns:
        scalar: summed BCE / (B T).
    """
    lo, hi = (cumulative_min(scores), cumulative_max_reversed(scores)) if use_cum_min \
        else (scores, scores)
    targets = targets.to(scores.dtype)
    bce = -targets * torch.log(lo + BCE_EPS) - (1 - targets) * torch.log(1 - hi + BCE_EPS)
    return bce.sum() / scores.numel()


def match_targets(matches: Sequence[Tuple[Tensor, Tensor]], num_steps: int,
                  device=None) -> Tensor:
    """(B, T) {0, 1} score targets: 1 on the matched steps of each image."""
    out = torch.zeros(len(matches), num_steps, device=device)
    for b, (step_idx, _) in enumerate(matches):
        out[b, step_idx.to(out.device)] = 1.0
    return out


def greedy_match(score: Tensor, matched: Tensor) -> Tensor:
    """Greedy assignment of one step to a GT (``f_greedy_match``): the GT(s) of maximal score
    among the unmatched ones, ties sharing the weight.

    Args:
        score: (B, M) non-negative relatedness (e.g. soft box IoU).
        matched: (B, M) {0, 1}: GTs already taken.

    Returns:
        (B, M) weights summing to 1 per image.
    """
    score = score * (1.0 - matched)
    best = (score == score.amax(1, keepdim=True)).to(score.dtype)
    return best / best.sum(1, keepdim=True)


def corner_box_iou(top_left: Tensor, bot_right: Tensor, gt_top_left: Tensor,
                   gt_bot_right: Tensor) -> Tensor:
    """IoU of axis-aligned boxes given by corners (release: ``f_iou_box``, used for the greedy
    match with ``use_iou_box``; no epsilon, 0 without overlap).

    Args:
        top_left, bot_right: (B, 1, 2) or (B, M, 2), (y, x). gt_top_left, gt_bot_right:
            (B, M, 2).

    Returns:
        (B, M) IoU.
    """
    lo = torch.maximum(top_left, gt_top_left)
    hi = torch.minimum(bot_right, gt_bot_right)
    overlap = ((lo < hi).all(-1)).to(lo.dtype) * (hi - lo).prod(-1)
    area = (bot_right - top_left).prod(-1)
    gt_area = (gt_bot_right - gt_top_left).prod(-1)
    return overlap / (area + gt_area - overlap)


def knob_probability(step: float, num_steps: int, base: float = 1.0, decay: float = 0.9,
                     steps_per_decay: int = 300, offset: float = 300,
                     use_timescale: bool = False) -> Tensor:
    """Probability of feeding ground truth at each time step (the release's "knob": scheduled
    sampling of GT boxes / segmentations, ``tf.train.exponential_decay``, not staircase).

    Args:
        step: the training iteration. num_steps: T.

    Returns:
        (T,) probabilities in [0, 1].
    """
    p = base * decay ** (max(0.0, step - offset) / steps_per_decay)
    t = torch.arange(num_steps, dtype=torch.float64)
    scale = 1.0 + torch.log(1.0 + 3.0 * t) if use_timescale else torch.ones(num_steps,
                                                                              dtype=torch.float64)
    return torch.clamp(p * scale, max=1.0).float()


__all__ = ['UNION_EPS_PER_PIXEL', 'BCE_EPS', 'union_eps', 'match_steps', 'matched_iou_loss',
           'cumulative_min', 'cumulative_max_reversed', 'score_loss', 'match_targets',
           'greedy_match', 'corner_box_iou', 'knob_probability', 'recurrent_attention_losses']


def recurrent_attention_losses(outputs: dict, gt_masks: Sequence[Tensor],
                               gt_boxes: Sequence[Tensor],
                               gt_labels: Optional[Sequence[Tensor]] = None,
                               stage: str = 'full', box_weight: float = 1.0,
                               segm_weight: float = 1.0, score_weight: float = 1.0,
                               cls_weight: float = 1.0, use_cum_min: bool = True) -> dict:
    """All training losses of one batch (release: ``full_model.py`` / ``box_model.py``).

    Args:
        outputs: :class:`~.network.RecurrentAttentionNet` outputs (``masks`` (B, T, H, W) or
            None in the box stage, ``scores`` (B, T), ``attn_box`` (B, T, H, W),
            ``cls_logits`` (B, T, K) or None).
        gt_masks: B tensors (M_b, H, W) binary. gt_boxes: B tensors (M_b, H, W), the filled
            padded GT boxes (:func:`~.attention.gt_boxes_from_masks`).
        gt_labels: B tensors (M_b,) class indices (only read with ``cls_logits``).
        stage: 'full' (box + segmentation + score [+ class]) or 'box' (box + score).
        *_weight: loss weights (release: 1, 1, ``loss_mix_ratio`` = 1).
        use_cum_min: score loss form (release: True).

    Returns:
        dict of scalar losses ``loss_box``, ``loss_score`` and (full) ``loss_segm``,
        (K > 1) ``loss_cls``. The score target is the segmentation matching in the full stage
        and the box matching in the box stage, as released.
    """
    flat = [g.flatten(1) for g in gt_masks]
    box_loss, box_matches = matched_iou_loss(outputs['attn_box'].flatten(2),
                                             [g.flatten(1) for g in gt_boxes])
    losses = dict(loss_box=box_weight * box_loss)
    matches = box_matches
    if stage == 'full':
        segm_loss, matches = matched_iou_loss(outputs['masks'].flatten(2), flat)
        losses['loss_segm'] = segm_weight * segm_loss
    scores = outputs['scores']
    targets = match_targets(matches, scores.shape[1], scores.device)
    losses['loss_score'] = score_weight * score_loss(scores, targets, use_cum_min)
    if outputs.get('cls_logits') is not None and stage == 'full':
        logits, labels = [], []
        for b, (step_idx, gt_idx) in enumerate(matches):
            logits.append(outputs['cls_logits'][b, step_idx])
            labels.append(gt_labels[b][gt_idx].long())
        logits, labels = torch.cat(logits), torch.cat(labels)
        losses['loss_cls'] = cls_weight * (
            torch.nn.functional.cross_entropy(logits, labels) if labels.numel()
            else outputs['cls_logits'].sum() * 0)
    return losses
