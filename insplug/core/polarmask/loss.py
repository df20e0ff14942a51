"""PolarMask's training losses as the official release (xieenze/PolarMask, mmdet 1.x
``PolarMask_Head.loss``) computes them, shared by the mmdet and detectron2 adapters.

Shape shorthand: B images, P points of one image (levels concatenated, finest first), K
classes, R rays, N positive points of the batch.

:func:`polarmask_loss_inputs` flattens the head outputs image-major (image 0's points of all
levels, then image 1's, ...), computes the official targets
(:func:`insplug.core.polarmask.targets.polar_targets_single`) and gathers the positives;
:func:`polarmask_losses` turns them into the four losses:

* ``loss_cls``: sigmoid focal loss (alpha 0.25, gamma 2) summed over all points, divided by
  ``num_pos + B`` (the release's normaliser, per process);
* ``loss_bbox``: mmdet 1.x IoU loss with ``+1`` sizes on the decoded boxes, weighted by the
  polar centerness target and divided by the sum of those weights;
* ``loss_mask``: polar IoU loss, same weights and normaliser;
* ``loss_centerness``: BCE of the centerness logit against the polar centerness target,
  averaged over positives.

With no positive the last three are 0 connected to the predictions.
"""
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor

from insplug.core.fcos.loss import sigmoid_focal_loss_sum
from insplug.core.losses.polar_iou import legacy_box_iou_loss, polar_iou_loss

from .targets import polar_centerness, polar_targets_single

__all__ = ['flatten_image_major', 'decode_distances', 'polarmask_loss_inputs',
           'polarmask_losses']


def flatten_image_major(maps: Sequence[Tensor], channels: int) -> Tensor:
    """L maps (B, c, H_l, W_l) -> (B * P, c), image-major, levels finest first."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps],
                     1).reshape(-1, channels)


def decode_distances(points: Tensor, distances: Tensor) -> Tensor:
    """(N, 2) points and (N, 4) l, t, r, b distances -> (N, 4) boxes x1, y1, x2, y2."""
    return torch.cat((points - distances[:, :2], points + distances[:, 2:]), 1)


def polarmask_loss_inputs(cls_scores: List[Tensor], bbox_preds: List[Tensor],
                          centernesses: List[Tensor], ray_preds: List[Tensor],
                          points: List[Tensor], strides: Sequence[int],
                          regress_ranges: Sequence[Sequence[float]], gt_boxes: List[Tensor],
                          gt_labels: List[Tensor], gt_masks: List[np.ndarray],
                          num_classes: int, num_rays: int = 36, radius: float = 1.5,
                          box_offset: float = 1.0) -> Dict[str, Tensor]:
    """Targets and positives of a batch.

    Args:
        cls_scores, bbox_preds, centernesses, ray_preds: L maps (B, K / 4 / 1 / R, H_l, W_l)
            (box distances and rays in pixels).
        points: L tensors (H_l * W_l, 2) xy of the level's points.
        strides, regress_ranges: per level.
        gt_boxes: B tensors (G_b, 4) x1, y1, x2, y2; gt_labels: B tensors (G_b,);
        gt_masks: B arrays (G_b, H, W) uint8 masks at the input size.
        num_classes, num_rays, radius, box_offset: see ``polar_targets_single``.

    Returns:
        dict: ``cls`` (B P, K) logits, ``labels`` (B P,) in [0, K], ``num_imgs``,
        ``num_pos`` (python ints), ``box_pred`` / ``box_target`` (N, 4) decoded boxes,
        ``ray_pred`` / ``ray_target`` (N, R), ``ctr_pred`` (N,) logits, ``ctr_target`` (N,),
        and ``box``, ``ray``, ``ctr``: all points' predictions (for zero losses).
    """
    num_imgs = cls_scores[0].shape[0]
    cls = flatten_image_major(cls_scores, num_classes)
    box = flatten_image_major(bbox_preds, 4)
    ctr = flatten_image_major(centernesses, 1)[:, 0]
    ray = flatten_image_major(ray_preds, num_rays)
    labels, box_t, ray_t = [], [], []
    for boxes, lab, masks in zip(gt_boxes, gt_labels, gt_masks):
        lb, bt, rt, _ = polar_targets_single(
            points, strides, regress_ranges, boxes, lab,
            masks if len(boxes) else np.zeros((0, 1, 1), np.uint8), num_classes, num_rays,
            radius, box_offset)
        labels.append(lb)
        box_t.append(bt)
        ray_t.append(rt)
    labels, box_t, ray_t = torch.cat(labels), torch.cat(box_t), torch.cat(ray_t)
    pts = torch.cat(points).repeat(num_imgs, 1)
    pos = (labels < num_classes).nonzero().reshape(-1)
    out = dict(cls=cls, labels=labels, num_imgs=num_imgs, num_pos=int(pos.numel()), box=box,
               ray=ray, ctr=ctr, box_pred=decode_distances(pts[pos], box[pos]),
               box_target=decode_distances(pts[pos], box_t[pos]), ray_pred=ray[pos],
               ray_target=ray_t[pos], ctr_pred=ctr[pos])
    out['ctr_target'] = polar_centerness(ray_t[pos]) if pos.numel() else ctr.new_zeros((0,))
    return out


def polarmask_losses(inputs: Dict[str, Tensor], focal_alpha: float = 0.25,
                     focal_gamma: float = 2.0, loss_weight_cls: float = 1.0,
                     loss_weight_bbox: float = 1.0, loss_weight_mask: float = 1.0,
                     loss_weight_centerness: float = 1.0) -> Dict[str, Tensor]:
    """The four losses of :func:`polarmask_loss_inputs`' output (module docstring)."""
    cls, labels = inputs['cls'], inputs['labels']
    onehot = torch.zeros_like(cls)
    fg = labels < cls.shape[1]
    onehot[fg.nonzero().reshape(-1), labels[fg]] = 1.0
    losses = dict(loss_cls=loss_weight_cls * sigmoid_focal_loss_sum(
        cls, onehot, focal_alpha, focal_gamma) / (inputs['num_pos'] + inputs['num_imgs']))
    if inputs['num_pos'] == 0:
        losses.update(loss_bbox=inputs['box'].sum() * 0, loss_mask=inputs['ray'].sum() * 0,
                      loss_centerness=inputs['ctr'].sum() * 0)
        return losses
    w = inputs['ctr_target']
    denom = w.sum()
    losses['loss_bbox'] = loss_weight_bbox * legacy_box_iou_loss(
        inputs['box_pred'], inputs['box_target'], w, denom)
    losses['loss_mask'] = loss_weight_mask * polar_iou_loss(
        inputs['ray_pred'], inputs['ray_target'], w, denom)
    losses['loss_centerness'] = loss_weight_centerness * torch.nn.functional.\
        binary_cross_entropy_with_logits(inputs['ctr_pred'], w)
    return losses
