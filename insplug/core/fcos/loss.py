"""FCOS losses as the official releases compute them (AdelaiDet ``FCOSOutputs.fcos_losses``,
FCOS-official ``FCOSLossComputation``, centermask2).

Shape shorthand: P points of all images and levels flattened, K classes, N positive points.

* Classification: sigmoid focal loss (alpha 0.25, gamma 2) summed over all points and
  classes, divided by ``num_pos_avg = max(mean over GPUs of #pos, 1)`` ('fg'; 'all' divides by
  the number of points).
* Box: IoU / GIoU / linear-IoU on (l, t, r, b) with **+1 smoothing**:
  ``iou = (I + 1) / (U + 1)``, ``giou = iou - (C - U) / C`` (C: enclosing box area, not
  smoothed), loss ``-log(iou)`` / ``1 - giou`` / ``1 - iou``, weighted by the centerness target,
  summed and divided by ``max(mean over GPUs of sum(ctr targets), 1e-6)``
  (``box_quality='ctrness'``); with ``box_quality='iou'`` unweighted and divided by
  ``num_pos_avg``.
* Quality: BCE-with-logits of the centerness logit against the centerness target (or the
  detached IoU with ``box_quality='iou'``), summed, divided by ``num_pos_avg``.

mmdet's FCOSHead differs: IoU without +1, centerness-weighted *mean* of the IoU loss.
"""
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .targets import centerness_targets

__all__ = ['fcos_ious', 'iou_loss', 'sigmoid_focal_loss_sum', 'fcos_losses']


def fcos_ious(pred: Tensor, target: Tensor, smooth: float = 1.0) -> Tuple[Tensor, Tensor]:
    """IoU and GIoU of boxes given as distances from a common point (AdelaiDet ``compute_ious``).

    Args:
        pred: (N, 4) l, t, r, b. target: (N, 4) l, t, r, b.
        smooth: added to intersection and union (official 1.0).

    Returns:
        ious (N,), gious (N,).
    """
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    t_area = (tl + tr) * (tt + tb)
    p_area = (pl + pr) * (pt + pb)
    w_i = torch.min(pl, tl) + torch.min(pr, tr)
    h_i = torch.min(pb, tb) + torch.min(pt, tt)
    g_w = torch.max(pl, tl) + torch.max(pr, tr)
    g_h = torch.max(pb, tb) + torch.max(pt, tt)
    enclose = g_w * g_h
    inter = w_i * h_i
    union = t_area + p_area - inter
    ious = (inter + smooth) / (union + smooth)
    gious = ious - (enclose - union) / enclose
    return ious, gious


def iou_loss(ious: Tensor, gious: Tensor, loss_type: str = 'giou',
             weight: Optional[Tensor] = None) -> Tensor:
    """Summed IoU loss (AdelaiDet ``IOULoss``).

    Args:
        ious, gious: (N,). loss_type: 'iou' (-log iou), 'linear_iou' (1 - iou), 'giou'
            (1 - giou). weight: optional (N,).

    Returns:
        scalar ``sum(loss * weight)``.
    """
    if loss_type == 'iou':
        losses = -torch.log(ious)
    elif loss_type == 'linear_iou':
        losses = 1 - ious
    elif loss_type == 'giou':
        losses = 1 - gious
    else:
        raise ValueError(f"loss_type must be 'iou', 'linear_iou' or 'giou', got {loss_type!r}")
    return (losses * weight).sum() if weight is not None else losses.sum()


def sigmoid_focal_loss_sum(logits: Tensor, targets: Tensor, alpha: float = 0.25,
                           gamma: float = 2.0) -> Tensor:
    """fvcore ``sigmoid_focal_loss`` with reduction 'sum'.

    Args:
        logits: (P, K). targets: (P, K) {0, 1}.

    Returns:
        scalar.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


def _identity(x: Tensor) -> Tensor:
    return x


def fcos_losses(cls_logits: Tensor, reg_pred: Tensor, ctr_logits: Tensor, labels: Tensor,
                reg_targets: Tensor, num_classes: int, loss_type: str = 'giou',
                iou_smooth: float = 1.0, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                box_quality: str = 'ctrness', cls_normalizer: str = 'fg',
                loss_weight_cls: float = 1.0,
                reduce_mean: Optional[Callable[[Tensor], Tensor]] = None
                ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """All FCOS losses of a batch.

    Args:
        cls_logits: (P, K). reg_pred: (P, 4) l, t, r, b (same scale as ``reg_targets``).
        ctr_logits: (P,). labels: (P,) long, K = background. reg_targets: (P, 4).
        num_classes: K.
        loss_type: 'giou' (AdelaiDet default), 'iou' (FCOS-official default), 'linear_iou'.
        iou_smooth: the +1 of the IoU (official 1.0; 0 gives the unsmoothed IoU).
        box_quality: 'ctrness' or 'iou' (AdelaiDet ``BOX_QUALITY``).
        cls_normalizer: 'fg' (number of positives) or 'all' (number of points).
        loss_weight_cls: multiplies the classification loss.
        reduce_mean: averages a scalar tensor over GPUs (identity when None).

    Returns:
        losses: ``loss_cls``, ``loss_bbox``, and ``loss_centerness`` (or ``loss_iou`` for
        box_quality='iou'); extras: ``pos_inds`` (N,), ``ctr_targets`` (N,),
        ``loss_denorm`` (scalar tensor), ``num_pos_avg`` (scalar tensor).
    """
    reduce_mean = reduce_mean or _identity
    pos_inds = torch.nonzero(labels != num_classes).squeeze(1)
    num_pos_avg = reduce_mean(cls_logits.new_tensor(float(pos_inds.numel()))).clamp(min=1.0)
    class_target = torch.zeros_like(cls_logits)
    class_target[pos_inds, labels[pos_inds]] = 1
    loss_cls = sigmoid_focal_loss_sum(cls_logits, class_target, focal_alpha, focal_gamma)
    if cls_normalizer == 'fg':
        loss_cls = loss_cls / num_pos_avg
    elif cls_normalizer == 'all':
        loss_cls = loss_cls / reduce_mean(
            cls_logits.new_tensor(float(labels.numel()))).clamp(min=1.0)
    else:
        raise ValueError(f"cls_normalizer must be 'fg' or 'all', got {cls_normalizer!r} "
                         "(AdelaiDet's stateful 'moving_fg' is not supported)")
    losses = {'loss_cls': loss_cls * loss_weight_cls}
    rp, rt, cp = reg_pred[pos_inds], reg_targets[pos_inds], ctr_logits[pos_inds]
    ious, gious = fcos_ious(rp, rt, iou_smooth)
    ctr_t = centerness_targets(rt)
    if box_quality == 'ctrness':
        loss_denorm = reduce_mean(ctr_t.sum().detach()).clamp(min=1e-6)
        losses['loss_bbox'] = iou_loss(ious, gious, loss_type, ctr_t) / loss_denorm
        losses['loss_centerness'] = F.binary_cross_entropy_with_logits(
            cp, ctr_t, reduction='sum') / num_pos_avg
    elif box_quality == 'iou':
        loss_denorm = num_pos_avg
        losses['loss_bbox'] = iou_loss(ious, gious, loss_type) / num_pos_avg
        losses['loss_iou'] = F.binary_cross_entropy_with_logits(
            cp, ious.detach(), reduction='sum') / num_pos_avg
    else:
        raise ValueError(f"box_quality must be 'ctrness' or 'iou', got {box_quality!r}")
    extras = {'pos_inds': pos_inds, 'ctr_targets': ctr_t, 'loss_denorm': loss_denorm,
              'num_pos_avg': num_pos_avg}
    return losses, extras
