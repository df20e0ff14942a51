"""SOLOv2 and SOLO losses (framework-free): dice on the dynamically convolved masks of the positive
cells, sigmoid focal loss on the category grid.

Shapes: B images; L levels; K classes; E kernel channels (E * k * k with the k x k dynamic
conv); (h, w) mask-feature size; S_l grid of level l; P_l positives of level l over the batch;
P = sum P_l.

Released weights and normalisers (AdelaiDet ``SOLOv2.loss``, mmdet 3 ``SOLOV2Head``):
``loss_ins = 3 * mean_P(1 - dice)``, dice ``2 sum(p t) / (sum p^2 + 0.001 + sum t^2 + 0.001)``;
``loss_cate = 1 * focal_sum / (C + 1)`` (alpha 0.25, gamma 2), C the number of distinct
positive cells (a cell may be the positive of several instances: P >= C).

mmdet 3's ``SOLOV2Head`` / ``SOLOHead`` divide the dice sum by C instead of P (both official
releases, WXinlong/SOLO and AdelaiDet, take the mean over the P targets): reachable with
``dice_normalizer='cells'``.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.fcos.loss import sigmoid_focal_loss_sum
from insplug.core.losses.dice import dice_loss

DEFAULT_LOSS = dict(dice_weight=3.0, focal_weight=1.0, focal_alpha=0.25, focal_gamma=2.0,
                    dice_normalizer='targets')


def dynamic_masks(mask_feat: Tensor, kernels: Tensor, kernel_size: int = 1) -> Tensor:
    """Masks of one image from dynamic kernels.

    Args:
        mask_feat: (E, h, w). kernels: (N, E * k * k).

    Returns:
        (N, h - k + 1, w - k + 1) logits.
    """
    n = kernels.shape[0]
    if n == 0:
        h, w = mask_feat.shape[-2:]
        return mask_feat.new_zeros((0, h - kernel_size + 1, w - kernel_size + 1))
    weight = kernels.reshape(n, mask_feat.shape[0], kernel_size, kernel_size)
    return F.conv2d(mask_feat.unsqueeze(0), weight).squeeze(0)


def positive_mask_logits(kernel_preds: Sequence[Tensor], mask_feats: Tensor,
                         targets: Sequence[Sequence[Dict[str, Tensor]]],
                         kernel_size: int = 1) -> List[Tensor]:
    """Mask logits of the positive cells, level by level, images in batch order.

    Args:
        kernel_preds: L tensors (B, E*k*k, S_l, S_l). mask_feats: (B, E, h, w).
        targets: per image, per level, dicts of :func:`solo_targets_single`.

    Returns:
        L tensors (P_l, h, w).
    """
    out = []
    for lvl, kernels in enumerate(kernel_preds):
        preds = []
        for img, img_targets in enumerate(targets):
            index = img_targets[lvl]['pos_index']
            k = kernels[img].flatten(1)[:, index].t()  # (P_l_img, E*k*k)
            preds.append(dynamic_masks(mask_feats[img], k, kernel_size))
        out.append(torch.cat(preds) if preds
                   else mask_feats.new_zeros((0,) + tuple(mask_feats.shape[-2:])))
    return out


def solov2_losses(cls_logits: Sequence[Tensor], kernel_preds: Sequence[Tensor],
                  mask_feats: Tensor, targets: Sequence[Sequence[Dict[str, Tensor]]],
                  num_classes: int, kernel_size: int = 1, dice_weight: float = 3.0,
                  focal_weight: float = 1.0, focal_alpha: float = 0.25,
                  focal_gamma: float = 2.0, dice_normalizer: str = 'targets'
                  ) -> Dict[str, Tensor]:
    """SOLOv2's two losses.

    Args:
        cls_logits: L tensors (B, K, S_l, S_l). kernel_preds: L tensors (B, E*k*k, S_l, S_l).
        mask_feats: (B, E, h, w). targets: per image, per level (:func:`solo_targets_single`).
        num_classes: K.
        dice_normalizer: 'targets' (official: mean over the P targets) or 'cells' (mmdet 3:
            sum over the P targets / the C distinct positive cells).

    Returns:
        ``loss_ins`` (dice, AdelaiDet's name; mmdet: ``loss_mask``), ``loss_cate``
        (mmdet: ``loss_cls``), scalars.
    """
    if dice_normalizer not in ('targets', 'cells'):
        raise ValueError(f"dice_normalizer must be 'targets' or 'cells', got {dice_normalizer!r}")
    mask_logits = positive_mask_logits(kernel_preds, mask_feats, targets, kernel_size)
    mask_targets = [torch.cat([t[lvl]['mask_targets'] for t in targets])
                    for lvl in range(len(cls_logits))]
    num_pos = sum(int(t[lvl]['pos_mask'].sum()) for t in targets for lvl in range(len(cls_logits)))
    logits = torch.cat([m.flatten(1) for m in mask_logits])
    tmask = torch.cat([m.flatten(1) for m in mask_targets])
    if logits.shape[0]:
        per_target = dice_loss(logits, tmask, eps=0.002, reduction='none')
        denominator = per_target.shape[0] if dice_normalizer == 'targets' else num_pos
        loss_ins = per_target.sum() / denominator * dice_weight
    else:
        loss_ins = mask_feats.sum() * 0
    labels = torch.cat([torch.cat([t[lvl]['labels'].flatten() for t in targets])
                        for lvl in range(len(cls_logits))])
    flat = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, num_classes) for c in cls_logits])
    onehot = torch.zeros_like(flat)
    pos = (labels != num_classes).nonzero().squeeze(1)
    onehot[pos, labels[pos]] = 1
    loss_cate = focal_weight * sigmoid_focal_loss_sum(
        flat, onehot, alpha=focal_alpha, gamma=focal_gamma) / (num_pos + 1)
    return dict(loss_ins=loss_ins, loss_cate=loss_cate)


def solo_losses(mask_logits: Sequence[Tensor], cls_logits: Sequence[Tensor],
                targets: Sequence[Sequence[Dict[str, Tensor]]], num_classes: int,
                mask_logits_y: Sequence[Tensor] = None, dice_weight: float = 3.0,
                focal_weight: float = 1.0, focal_alpha: float = 0.25,
                focal_gamma: float = 2.0) -> Dict[str, Tensor]:
    """SOLO's losses (vanilla, or decoupled when ``mask_logits_y`` is given).

    Every positive cell has one mask target (:func:`solo_v1_targets_single`), so the dice
    mean over targets equals the sum over the C positive cells / C (WXinlong/SOLO and mmdet 3).

    Args:
        mask_logits: L tensors (B, S_l^2, h_l, w_l) (vanilla) or the x maps (B, S_l, h_l, w_l).
        cls_logits: L tensors (B, K, S_l, S_l). targets: per image, per level.
        mask_logits_y: decoupled: L tensors (B, S_l, h_l, w_l).

    Returns:
        ``loss_ins`` (mmdet: ``loss_mask``), ``loss_cate`` (``loss_cls``).
    """
    per_target = []
    for lvl, logits in enumerate(mask_logits):
        probs, tmasks = [], []
        for img, img_targets in enumerate(targets):
            pos = img_targets[lvl]['pos_mask']
            if mask_logits_y is None:
                probs.append(logits[img, pos].sigmoid().flatten(1))
            else:
                grid = cls_logits[lvl].shape[-1]
                cells = pos.nonzero().squeeze(1)
                p = (mask_logits_y[lvl][img, cells // grid].sigmoid()
                     * logits[img, cells % grid].sigmoid())
                probs.append(p.flatten(1))
            tmasks.append(img_targets[lvl]['mask_targets'].flatten(1))
        probs, tmasks = torch.cat(probs), torch.cat(tmasks)
        if probs.shape[0]:
            per_target.append(dice_loss(probs, tmasks, eps=0.002, reduction='none',
                                        from_logits=False))
    num_pos = sum(len(x) for x in per_target)
    if num_pos:
        loss_ins = torch.cat(per_target).mean() * dice_weight
    else:
        loss_ins = sum(m.sum() for m in mask_logits) * 0
        if mask_logits_y is not None:
            loss_ins = loss_ins + sum(m.sum() for m in mask_logits_y) * 0
    labels = torch.cat([torch.cat([t[lvl]['labels'].flatten() for t in targets])
                        for lvl in range(len(cls_logits))])
    flat = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, num_classes) for c in cls_logits])
    onehot = torch.zeros_like(flat)
    pos = (labels != num_classes).nonzero().squeeze(1)
    onehot[pos, labels[pos]] = 1
    loss_cate = focal_weight * sigmoid_focal_loss_sum(
        flat, onehot, alpha=focal_alpha, gamma=focal_gamma) / (num_pos + 1)
    return dict(loss_ins=loss_ins, loss_cate=loss_cate)
