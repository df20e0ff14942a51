"""CenterMask for detectron2, placed as centermask2 places it.

Shapes: B images, N RoIs, P positive RoIs of one image, C channels, S pooled side (14),
M = 2 S mask side (28), K classes.

``GeneralizedRCNN`` (stock detectron2) with

* backbone ``build_insplug_fcos_vovnet_fpn_backbone`` (:mod:`insplug.detectron2.vovnet`) or
  ``build_insplug_fcos_resnet_fpn_backbone`` (:mod:`insplug.detectron2.fcos`);
* proposal generator ``InsplugFCOS`` with ``MODEL.INSPLUG.FCOS.YIELD_PROPOSAL: True`` (centermask2
  trains the mask head on FCOS's post-NMS detections);
* ROI heads :class:`InsplugCenterROIHeads` (centermask2: ``CenterROIHeads``): CenterMask's eq. 2
  level assignment (box area / image area, centermask2's ``ASSIGN_CRITERION: ratio``), the mask
  head of ``MODEL.ROI_MASK_HEAD.NAME`` -- :class:`InsplugSpatialAttentionMaskHead`
  (centermask2: ``SpatialAttentionMaskHead``) -- and the MaskIoU head, built by the ROI heads
  themselves (centermask2 has its own ``ROI_MASKIOU_HEAD_REGISTRY``; insplug adds no registry).

The maths is :mod:`insplug.core.centermask` (``roi_head``: positive selection, pooling, losses,
inference; ``heads``: SAG-Mask and MaskIoU modules; ``roi`` / ``maskiou``: targets), shared with
the mmdet adapter. This module converts ``Instances`` / ``PolygonMasks`` / ``BitMasks``.

Inference returns ``pred_masks`` as (D, 1, M, M) probabilities plus ``mask_scores`` (box score
x predicted MaskIoU), like centermask2; detectron2's ``detector_postprocess`` (called by
``GeneralizedRCNN``) rescales and clips the boxes, drops empty ones and pastes the masks
(threshold 0.5). Stock ``COCOEvaluator`` ranks segm results by ``scores`` (the FCOS box score);
centermask2's own evaluator ranks them by ``mask_scores`` (see docs/deviations/centermask.md).

yacs (centermask2's ``MODEL.MASKIOU_ON``, ``MODEL.MASKIOU_LOSS_WEIGHT`` and
``MODEL.ROI_MASKIOU_HEAD.*``, under ``MODEL.INSPLUG.CENTERMASK``)::

    MASKIOU_ON: True
    MASKIOU_LOSS_WEIGHT: 1.0
    MASKIOU_CONV_DIM: 256
    MASKIOU_NUM_CONV: 4
    MASKIOU_FC_DIM: 1024

and the stock keys ``MODEL.ROI_HEADS.{IN_FEATURES, NUM_CLASSES, IOU_THRESHOLDS,
BATCH_SIZE_PER_IMAGE, POSITIVE_FRACTION, PROPOSAL_APPEND_GT}``,
``MODEL.ROI_MASK_HEAD.{NAME, NUM_CONV, CONV_DIM, POOLER_RESOLUTION, CLS_AGNOSTIC_MASK}``.
"""
from typing import Dict, List, Optional

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, build_mask_head
from detectron2.structures import Boxes, Instances, PolygonMasks
from torch import nn

from insplug.core.centermask.heads import MaskIoUHead, SAGMaskHead
from insplug.core.centermask.maskiou import bitmap_area_ratios, polygon_area_ratios
from insplug.core.centermask.roi import mask_targets, polygon_mask_targets
from insplug.core.centermask.roi_head import (centermask_roi_inference, centermask_roi_losses,
                                              pool_rois, select_positive_rois)

from .config import register_config_node, signature_defaults

__all__ = ['InsplugCenterROIHeads', 'InsplugSpatialAttentionMaskHead']


@register_config_node('CENTERMASK')
def _centermask_node():
    iou = signature_defaults(MaskIoUHead)
    losses = signature_defaults(centermask_roi_losses)
    node = CN()
    node.MASKIOU_ON = True
    node.MASKIOU_LOSS_WEIGHT = losses['loss_maskiou_weight']
    node.MASKIOU_CONV_DIM = iou['conv_channels']
    node.MASKIOU_NUM_CONV = iou['num_convs']
    node.MASKIOU_FC_DIM = iou['fc_channels']
    return node


@ROI_MASK_HEAD_REGISTRY.register()
class InsplugSpatialAttentionMaskHead(SAGMaskHead):
    """SAG-Mask (:class:`insplug.core.centermask.heads.SAGMaskHead`): (N, C, S, S) pooled
    features -> (N, K or 1, 2S, 2S) mask logits. ``MODEL.ROI_MASK_HEAD.{NUM_CONV, CONV_DIM,
    CLS_AGNOSTIC_MASK}``; losses and inference are :class:`InsplugCenterROIHeads`'."""

    @configurable
    def __init__(self, *, in_channels: int, conv_channels: int = 256, num_convs: int = 4,
                 num_classes: int = 80, class_agnostic: bool = False):
        super().__init__(in_channels, conv_channels, num_convs, num_classes, class_agnostic)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        m = cfg.MODEL.ROI_MASK_HEAD
        return dict(in_channels=input_shape.channels, conv_channels=m.CONV_DIM,
                    num_convs=m.NUM_CONV, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                    class_agnostic=m.CLS_AGNOSTIC_MASK)


def _roi_mask_targets(gt: Instances, index, boxes, size: int, with_ratios: bool):
    """(P, M, M) targets and (P,) area ratios (or None) of RoIs ``boxes`` matched to objects
    ``index`` of one image: polygons rasterised in each box (centermask2 on COCO), bitmaps
    RoIAligned."""
    if len(index) == 0:
        return boxes.new_zeros((0, size, size)), boxes.new_zeros((0,), dtype=torch.float64)
    if not gt.has('gt_masks'):
        raise KeyError('CenterMask training needs gt_masks: set MODEL.MASK_ON True')
    masks = gt.gt_masks
    if isinstance(masks, PolygonMasks):
        polys = [masks.polygons[i] for i in index.tolist()]
        return (polygon_mask_targets(polys, boxes, size),
                polygon_area_ratios(polys, boxes) if with_ratios else None)
    bitmaps = masks.tensor if hasattr(masks, 'tensor') else masks
    bitmaps = bitmaps.to(boxes.device)
    return (mask_targets(bitmaps, index, boxes, size),
            bitmap_area_ratios(bitmaps, index, boxes) if with_ratios else None)


@ROI_HEADS_REGISTRY.register()
class InsplugCenterROIHeads(nn.Module):
    """CenterMask's ROI heads (centermask2's ``CenterROIHeads``) on FCOS detections.

    Args:
        in_features: pooled levels (``['p3', 'p4', 'p5']``); strides: theirs (8, 16, 32).
        mask_head: (N, C, S, S) -> (N, K or 1, 2S, 2S) logits.
        maskiou_head: :class:`insplug.core.centermask.heads.MaskIoUHead` or None.
        pooler_resolution: S (14).
        pos_iou_thr: ``ROI_HEADS.IOU_THRESHOLDS[0]`` (0.5).
        max_pos_per_img: ``BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION`` (128).
        append_gt: ``PROPOSAL_APPEND_GT``.
        maskiou_loss_weight: ``MASKIOU_LOSS_WEIGHT``.
    """

    @configurable
    def __init__(self, *, in_features, strides, mask_head: nn.Module,
                 maskiou_head: Optional[nn.Module], pooler_resolution: int = 14,
                 pos_iou_thr: float = 0.5, max_pos_per_img: int = 128, append_gt: bool = True,
                 maskiou_loss_weight: float = 1.0):
        super().__init__()
        self.in_features = list(in_features)
        self.strides = [int(s) for s in strides]
        self.mask_head = mask_head
        self.maskiou_head = maskiou_head
        self.pooler_resolution = pooler_resolution
        self.pos_iou_thr = pos_iou_thr
        self.max_pos_per_img = max_pos_per_img
        self.append_gt = append_gt
        self.maskiou_loss_weight = maskiou_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        r, m, c = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_MASK_HEAD, cfg.MODEL.INSPLUG.CENTERMASK
        missing = [f for f in r.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(f'MODEL.ROI_HEADS.IN_FEATURES {list(r.IN_FEATURES)}: {missing} are '
                             f'not backbone outputs {sorted(input_shape)}')
        if not cfg.MODEL.MASK_ON:
            raise ValueError('InsplugCenterROIHeads segments FCOS boxes: set MODEL.MASK_ON True')
        channels = {input_shape[f].channels for f in r.IN_FEATURES}
        if len(channels) != 1:
            raise ValueError(f'InsplugCenterROIHeads: pooled levels differ in channels {channels}')
        if cfg.MODEL.PROPOSAL_GENERATOR.NAME == 'InsplugFCOS':
            f = cfg.MODEL.INSPLUG.FCOS
            if f.NUM_CLASSES != r.NUM_CLASSES:
                raise ValueError(f'MODEL.INSPLUG.FCOS.NUM_CLASSES ({f.NUM_CLASSES}) must equal '
                                 f'MODEL.ROI_HEADS.NUM_CLASSES ({r.NUM_CLASSES})')
            if not f.YIELD_PROPOSAL:
                raise ValueError('InsplugCenterROIHeads trains on FCOS proposals: set '
                                 'MODEL.INSPLUG.FCOS.YIELD_PROPOSAL True')
        in_channels = channels.pop()
        res = m.POOLER_RESOLUTION
        mask_head = build_mask_head(cfg, ShapeSpec(channels=in_channels, height=res, width=res))
        maskiou_head = MaskIoUHead(in_channels, c.MASKIOU_CONV_DIM, c.MASKIOU_NUM_CONV,
                                   c.MASKIOU_FC_DIM, res, r.NUM_CLASSES) if c.MASKIOU_ON else None
        return dict(in_features=list(r.IN_FEATURES),
                    strides=[input_shape[f].stride for f in r.IN_FEATURES],
                    mask_head=mask_head, maskiou_head=maskiou_head, pooler_resolution=res,
                    pos_iou_thr=r.IOU_THRESHOLDS[0],
                    max_pos_per_img=int(r.BATCH_SIZE_PER_IMAGE * r.POSITIVE_FRACTION),
                    append_gt=r.PROPOSAL_APPEND_GT, maskiou_loss_weight=c.MASKIOU_LOSS_WEIGHT)

    def _features(self, features):
        return [features[f] for f in self.in_features]

    @staticmethod
    def _boxes(inst: Instances):
        return (inst.pred_boxes if inst.has('pred_boxes') else inst.proposal_boxes).tensor

    def losses(self, features, proposals: List[Instances], targets: List[Instances]):
        """``loss_mask`` and ``loss_maskiou`` on the positives among the proposals."""
        size = 2 * self.pooler_resolution
        with_iou = self.maskiou_head is not None
        boxes_list, labels, mask_t, ratios = [], [], [], []
        for props, gt in zip(proposals, targets):
            boxes, index = select_positive_rois(self._boxes(props), gt.gt_boxes.tensor,
                                                self.pos_iou_thr, self.max_pos_per_img,
                                                self.append_gt)
            boxes_list.append(boxes)
            labels.append(gt.gt_classes[index])
            t, q = _roi_mask_targets(gt, index, boxes, size, with_iou)
            mask_t.append(t)
            ratios.append(q)
        pooled = pool_rois(self._features(features), boxes_list,
                           [p.image_size for p in proposals], self.strides,
                           self.pooler_resolution)
        return centermask_roi_losses(self.mask_head, self.maskiou_head, pooled,
                                     torch.cat(labels), torch.cat(mask_t),
                                     torch.cat(ratios) if with_iou else None, 1.0,
                                     self.maskiou_loss_weight)

    def inference(self, features, instances: List[Instances]) -> List[Instances]:
        """Detections with ``pred_masks`` (D, 1, M, M) probabilities and ``mask_scores``."""
        boxes_list = [self._boxes(i) for i in instances]
        pooled = pool_rois(self._features(features), boxes_list,
                           [i.image_size for i in instances], self.strides,
                           self.pooler_resolution)
        labels = torch.cat([i.pred_classes for i in instances])
        probs, iou = centermask_roi_inference(self.mask_head, self.maskiou_head, pooled, labels)
        counts = [len(i) for i in instances]
        out = []
        for inst, boxes, p, q in zip(instances, boxes_list, probs.split(counts),
                                     iou.split(counts)):
            res = Instances(inst.image_size)
            res.pred_boxes = Boxes(boxes.clone())
            res.scores = inst.scores
            res.pred_classes = inst.pred_classes
            res.pred_masks = p[:, None]
            res.mask_scores = inst.scores * q
            out.append(res)
        return out

    def forward(self, images, features: Dict[str, torch.Tensor], proposals,
                targets: Optional[List[Instances]] = None):
        """detectron2 ROI-heads interface. In training ``proposals`` is ``InsplugFCOS``'s
        result dict (its ``proposals`` entry, present with ``YIELD_PROPOSAL: True``) or a list
        of ``Instances``."""
        del images
        if self.training:
            if isinstance(proposals, dict):
                if 'proposals' not in proposals:
                    raise KeyError('InsplugCenterROIHeads trains on FCOS proposals: set '
                                   'MODEL.INSPLUG.FCOS.YIELD_PROPOSAL True')
                proposals = proposals['proposals']
            if targets is None:
                raise ValueError('InsplugCenterROIHeads needs targets in training')
            return [], self.losses(features, proposals, targets)
        return self.inference(features, proposals), {}
