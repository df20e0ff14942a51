"""CenterMask's RoI-head steps shared by the mmdet and detectron2 adapters (centermask2's
``CenterROIHeads``): positive RoI selection, level-adaptive pooling, the SAG-Mask and MaskIoU
losses, and mask / MaskIoU inference.

Shape shorthand: B images, N RoIs (all images), P positive RoIs of one image, G objects,
C channels, S pooled side (14), M = 2 S mask side (28), K classes, L pooled levels.

The adapters only turn their structures (mmdet ``InstanceData`` / detectron2 ``Instances``)
into the tensors below and back; mask targets come from
:func:`insplug.core.centermask.roi.polygon_mask_targets` / ``mask_targets`` and area ratios
from :mod:`insplug.core.centermask.maskiou`.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .heads import gather_class, mask_loss
from .maskiou import maskiou_loss, maskiou_targets
from .roi import (adaptive_roi_levels, boxes_to_rois, canonical_levels, match_proposals,
                  multilevel_roi_align, subsample_positives)

__all__ = ['select_positive_rois', 'pool_rois', 'centermask_roi_losses',
           'centermask_roi_inference']


def select_positive_rois(proposal_boxes: Tensor, gt_boxes: Tensor, pos_iou_thr: float = 0.5,
                         max_pos: int = 128, append_gt: bool = True,
                         generator=None) -> Tuple[Tensor, Tensor]:
    """Positive training RoIs of one image (centermask2: GT boxes appended, IoU >= 0.5 match,
    at most ``BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION`` random positives).

    Args:
        proposal_boxes: (N_i, 4) FCOS proposals x1, y1, x2, y2 (detached).
        gt_boxes: (G, 4).
        pos_iou_thr: proposal-object IoU of a positive.
        max_pos: cap on positives (<= 0: all).
        append_gt: add the GT boxes to the proposals first.

    Returns:
        boxes (P, 4) and their object index (P,) long.
    """
    boxes = proposal_boxes.detach()
    gt_boxes = gt_boxes.to(boxes)
    if append_gt:
        boxes = torch.cat([boxes, gt_boxes])
    index = match_proposals(boxes, gt_boxes, pos_iou_thr)
    pos = subsample_positives(index, max_pos, generator)
    return boxes[pos], index[pos]


def pool_rois(features: Sequence[Tensor], boxes_list: List[Tensor],
              image_sizes: Sequence[Sequence[int]], strides: Sequence[int],
              roi_size: int = 14) -> Tensor:
    """RoIAlign every RoI from the level of CenterMask's eq. 2 (box area / image area).

    Args:
        features: L maps (B, C, H_l, W_l) with ``strides`` (P3-P5: 8, 16, 32).
        boxes_list: B tensors (N_b, 4) in image coordinates.
        image_sizes: B (h, w) resized image sizes before padding.
        strides: L strides.
        roi_size: S.

    Returns:
        (N, C, S, S).
    """
    min_level, max_level = canonical_levels(strides)
    rois = boxes_to_rois(boxes_list)
    areas = torch.cat([b.new_full((len(b),), float(h * w))
                       for b, (h, w) in zip(boxes_list, image_sizes)])
    levels = adaptive_roi_levels(rois[:, 1:], areas, min_level, max_level)
    return multilevel_roi_align(list(features)[:len(strides)], rois, levels, strides, roi_size)


def centermask_roi_losses(mask_head: nn.Module, maskiou_head: Optional[nn.Module],
                          pooled: Tensor, labels: Tensor, mask_targets: Tensor,
                          area_ratios: Optional[Tensor], loss_mask_weight: float = 1.0,
                          loss_maskiou_weight: float = 1.0) -> Dict[str, Tensor]:
    """SAG-Mask BCE and MaskIoU losses of the positive RoIs.

    Args:
        mask_head: (N, C, S, S) -> (N, K or 1, M, M) logits (``SAGMaskHead``).
        maskiou_head: ``MaskIoUHead`` or None (no MaskIoU loss).
        pooled: (N, C, S, S) pooled features of the positives.
        labels: (N,) their classes.
        mask_targets: (N, M, M) in {0, 1}.
        area_ratios: (N,) fraction of each object inside its RoI (None without MaskIoU).
        loss_mask_weight, loss_maskiou_weight: weights.

    Returns:
        ``loss_mask`` and, with a MaskIoU head, ``loss_maskiou``. The mask probabilities
        entering the MaskIoU head are not detached (centermask2): the MaskIoU loss also trains
        the mask head.
    """
    logits = mask_head(pooled)
    losses = dict(loss_mask=loss_mask_weight * mask_loss(logits, labels, mask_targets))
    if maskiou_head is None:
        return losses
    if labels.numel() == 0:
        losses['loss_maskiou'] = logits.sum() * 0.0
        return losses
    selected = gather_class(logits, labels)
    iou_t = maskiou_targets(selected, mask_targets, area_ratios)
    pred = gather_class(maskiou_head(pooled, selected.sigmoid()[:, None]), labels)
    losses['loss_maskiou'] = maskiou_loss(pred, iou_t, loss_maskiou_weight)
    return losses


def centermask_roi_inference(mask_head: nn.Module, maskiou_head: Optional[nn.Module],
                             pooled: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    """Mask probabilities and predicted MaskIoU of detections.

    Args:
        pooled: (N, C, S, S); labels: (N,) predicted classes.

    Returns:
        probs (N, M, M) of each detection's class, iou (N,) (ones without a MaskIoU head);
        the rescored mask score is ``box score * iou`` (centermask2's ``mask_scores``).
    """
    logits = mask_head(pooled)
    probs = gather_class(logits, labels).sigmoid() if labels.numel() else logits[:, 0]
    if maskiou_head is not None and labels.numel():
        iou = gather_class(maskiou_head(pooled, probs[:, None]), labels)
    else:
        iou = probs.new_ones((labels.numel(),))
    return probs, iou
