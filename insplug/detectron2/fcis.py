"""FCIS for detectron2: ``FCISROIHeads`` (ROI_HEADS_REGISTRY) on ``GeneralizedRCNN``.

Shapes: B images; N_i proposals of image i; (h_i, w_i) its un-padded input size.

The release's split of the trunk maps onto detectron2 directly: the RPN reads ``res4``
(``MODEL.RPN.IN_FEATURES: [res4]``), this head reads the dilated ``res5``
(``MODEL.ROI_HEADS.IN_FEATURES: [res5]``, ``MODEL.RESNETS.RES5_DILATION: 2``). Everything
else is :mod:`insplug.core.fcis` (shared with the mmdet adapter): targets, OHEM, losses, the two
test iterations and mask voting. Here: detectron2 boxes are pixel edges (gt ``x2 - 1`` in,
voted ``x2 + 1`` out), classes 0..C-1 (the release's 1..C). ``pred_masks`` are the voted
(D, 1, S, S) masks in the voted boxes, as every detectron2 RoI head returns them, pasted by
``GeneralizedRCNN``'s ``detector_postprocess`` (bilinear, threshold 0.5): they are scaled by
0.5 / BINARY_THRESH so that its 0.5 is the release's 0.4 (linear scaling commutes with the
bilinear paste); the paste geometry is detectron2's, not the release's ``cv2.resize``
(the mmdet adapter pastes as the release does).

yacs::

    MODEL.ROI_HEADS.NAME: FCISROIHeads
    MODEL.INSPLUG.FCIS.*        # head geometry, training and test settings (core defaults)
"""
from typing import Dict

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, Instances
from detectron2.config import CfgNode as CN

from insplug.core.fcis import (TEST_DEFAULTS, TRAIN_DEFAULTS, FCISHeadNet, fcis_predict_image,
                               fcis_train_step)

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor


@register_config_node('FCIS')
def _fcis_node():
    net = signature_defaults(FCISHeadNet)
    node = CN()
    node.MID_CHANNELS = net['mid_channels']
    node.GROUP_SIZE = net['group_size']
    node.POOLED_SIZE = 21
    node.OHEM_ROIS = TRAIN_DEFAULTS['ohem_rois']
    node.LOSS_WEIGHTS = list(TRAIN_DEFAULTS['loss_weights'])
    node.BINARY_THRESH = TRAIN_DEFAULTS['binary_thresh']
    node.FG_THRESH = TRAIN_DEFAULTS['fg_thresh']
    node.BBOX_STDS = list(TRAIN_DEFAULTS['bbox_stds'])
    node.TEST_ITERATIONS = TEST_DEFAULTS['iterations']
    node.MIN_DROP_SIZE = TEST_DEFAULTS['min_drop_size']
    node.NMS = TEST_DEFAULTS['nms']
    node.MERGE_THRESH = TEST_DEFAULTS['merge_thr']
    node.SCORE_FLOOR = TEST_DEFAULTS['score_floor']
    return node


def _inclusive(boxes):
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:] - 1, boxes[:, :2])], 1)


@ROI_HEADS_REGISTRY.register()
class FCISROIHeads(torch.nn.Module):
    """The FCIS head on one feature map (``ROI_HEADS.IN_FEATURES``, one name)."""

    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec]):
        super().__init__()
        names = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(names) != 1 or names[0] not in input_shape:
            raise ValueError(f'FCISROIHeads reads one feature map (the dilated res5): '
                             f'MODEL.ROI_HEADS.IN_FEATURES {names} of {sorted(input_shape)}')
        f = cfg.MODEL.INSPLUG.FCIS
        self.in_feature = names[0]
        self.num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.pooled_size = f.POOLED_SIZE
        self.spatial_scale = 1.0 / input_shape[self.in_feature].stride
        self.head = FCISHeadNet(input_shape[self.in_feature].channels, self.num_classes + 1,
                                f.MID_CHANNELS, f.GROUP_SIZE)
        self.train_cfg = dict(ohem_rois=f.OHEM_ROIS, loss_weights=tuple(f.LOSS_WEIGHTS),
                              binary_thresh=f.BINARY_THRESH, fg_thresh=f.FG_THRESH,
                              bg_thresh_hi=f.FG_THRESH, bbox_stds=tuple(f.BBOX_STDS),
                              batch_rois=cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE)
        self.test_cfg = dict(iterations=f.TEST_ITERATIONS, min_drop_size=f.MIN_DROP_SIZE,
                             nms=f.NMS, merge_thr=f.MERGE_THRESH,
                             max_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
                             binary_thresh=f.BINARY_THRESH, score_floor=f.SCORE_FLOOR,
                             bbox_stds=tuple(f.BBOX_STDS))

    def forward(self, images, features, proposals, targets=None):
        feat = features[self.in_feature]
        boxes = [p.proposal_boxes.tensor for p in proposals]
        if self.training:
            if targets is None:
                raise ValueError('FCISROIHeads needs the ground-truth targets in training')
            losses = fcis_train_step(
                self.head, feat, boxes, [_inclusive(t.gt_boxes.tensor) for t in targets],
                [t.gt_classes + 1 for t in targets],
                [instances_mask_tensor(t, feat.device).float() for t in targets],
                self.pooled_size, self.spatial_scale, self.train_cfg)
            return proposals, losses
        maps = self.head(feat)
        results = []
        for i, (b, hw) in enumerate(zip(boxes, images.image_sizes)):
            vb, scores, labels, masks = fcis_predict_image(
                self.head, tuple(m[i:i + 1] for m in maps), b, hw, hw, (1.0, 1.0),
                self.pooled_size, self.spatial_scale, self.test_cfg, paste=False)
            inst = Instances(hw)
            inst.pred_boxes = Boxes(torch.cat([vb[:, :2], vb[:, 2:] + 1], 1))
            inst.scores = scores.float()
            inst.pred_classes = labels - 1
            inst.pred_masks = (masks * (0.5 / self.test_cfg['binary_thresh']))[:, None]
            results.append(inst)
        return results, {}
