"""D2Det for detectron2: ``D2DetROIHeads`` (ROI_HEADS_REGISTRY) on ``GeneralizedRCNN``.

Shapes: B images; P positive proposals; N detections; C FPN channels; K classes.

The same core as the mmdet adapter (:mod:`insplug.core.d2det`): per-level discriminative RoI
pooling (mmdet 1.x level rule, ``roi_levels``), a two-FC classifier without box regression
(cross-entropy, weight 2.0), the dense-regression head on 14 x 14 RoIAlign features of the
jittered positives (``dense_losses``), and at test time the refined boxes (``refine_boxes``)
and the instance masks with mask scores (``instance_masks``). Only detectron2's data handling
lives here. Test-time ``pred_masks`` are (N, 1, 28, 28) probabilities that
``detector_postprocess`` pastes; ``mask_scores`` holds box score + 0.3 * predicted mask IoU
(``MODEL.INSPLUG.D2DET.MASK_SCORES_AS_SCORES: True`` puts them into ``scores``, which
detectron2's COCOEvaluator ranks both boxes and masks by).

Only the released instance-segmentation variant is adapted here (``WITH_MASK: True``); the
detection variant (its final soft-NMS) is mmdet-only.

yacs::

    MODEL.ROI_HEADS.NAME: D2DetROIHeads
    MODEL.INSPLUG.D2DET.*          # see _d2det_node
"""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.roi_heads import ROIHeads, select_foreground_proposals
from detectron2.modeling.poolers import convert_boxes_to_pooler_format
from detectron2.structures import Boxes

from insplug.core.d2det import (LOSS_WEIGHTS, D2DetHeadNet, DiscriminativeRoIPool, dense_losses,
                                instance_masks, jitter_boxes, mask_area_ratios, pool_levels,
                                refine_boxes, roi_levels, sample_regression_rois)

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['D2DetROIHeads']


@register_config_node('D2DET')
def _d2det_node():
    net = signature_defaults(D2DetHeadNet)
    pool = signature_defaults(DiscriminativeRoIPool)
    node = CN()
    node.NUM_CONVS = net['num_convs']
    node.CONV_DIM = net['conv_channels']
    node.NUM_GROUPS = net['num_groups']
    node.WITH_MASK = net['with_mask']
    node.DECONV_DIM = net['deconv_channels']
    node.DECONV_GROUPS = net['deconv_groups']
    node.FC_DIM = net['fc_channels']
    node.REG_POOLER_RESOLUTION = net['roi_feat_size']
    node.POOLER_RESOLUTION = pool['out_size']
    node.SAMPLE_PER_PART = pool['sample_per_part']
    node.TRANS_STD = pool['trans_std']
    node.DEFORM_FC_DIM = pool['deform_fc_channels']
    node.BOX_FC_DIM = 1024
    node.BOX_CLS_LOSS_WEIGHT = 2.0
    node.JITTER = 0.15
    node.MAX_NUM_REG = 192
    node.LOSS_REG_WEIGHT = LOSS_WEIGHTS['reg']
    node.LOSS_OVERLAP_WEIGHT = LOSS_WEIGHTS['overlap']
    node.LOSS_MASK_WEIGHT = LOSS_WEIGHTS['mask']
    node.LOSS_MASK_IOU_WEIGHT = LOSS_WEIGHTS['mask_iou']
    node.RELEASE_BROADCAST = False
    node.BOX_PLUS_ONE = True
    node.LEGACY_PLUS_ONE = True     # mmdet 1.x RoI level rule and RoIAlign span
    node.MASK_SCORE_WEIGHT = 0.3
    node.MASK_SCORES_AS_SCORES = False
    node.CLIP_REFINED = True
    return node


@ROI_HEADS_REGISTRY.register()
class D2DetROIHeads(ROIHeads):
    """D2Det's second stage (instance variant) as detectron2 ROI heads.

    Keys: ``box_pools.{l}`` (DiscriminativeRoIPool per level), ``box_head.shared_fcs.{0,1}`` and
    ``box_head.fc_cls`` (background last), ``d2det_head`` (D2DetHeadNet).
    """

    num_classes_key = 'MODEL.ROI_HEADS.NUM_CLASSES'

    @configurable
    def __init__(self, *, in_features, strides, in_channels, head_args, pool_args,
                 box_fc_dim=1024, box_cls_loss_weight=2.0, jitter=0.15, max_num_reg=192,
                 loss_weights=None, release_broadcast=False, box_plus_one=True,
                 legacy_plus_one=True, mask_score_weight=0.3, mask_scores_as_scores=False,
                 clip_refined=True, test_score_thresh=0.05, test_nms_thresh=0.3,
                 test_topk_per_image=100, **kwargs):
        super().__init__(**kwargs)
        self.in_features = list(in_features)
        self.in_channels = in_channels
        self.box_pools = nn.ModuleList(
            DiscriminativeRoIPool(1.0 / s, out_channels=in_channels, **pool_args)
            for s in strides)
        size = self.box_pools[0].out_size
        reg_size = head_args['roi_feat_size']
        self.reg_pools = [ROIAlign((reg_size, reg_size), 1.0 / s, 2, aligned=False)
                          for s in strides]
        self.box_head = nn.Module()
        self.box_head.shared_fcs = nn.ModuleList([nn.Linear(in_channels * size * size, box_fc_dim),
                                                  nn.Linear(box_fc_dim, box_fc_dim)])
        self.box_head.fc_cls = nn.Linear(box_fc_dim, self.num_classes + 1)
        nn.init.normal_(self.box_head.fc_cls.weight, std=0.01)
        nn.init.zeros_(self.box_head.fc_cls.bias)
        for fc in self.box_head.shared_fcs:  # mmdet's Shared2FCBBoxHead: xavier uniform
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.d2det_head = D2DetHeadNet(in_channels=in_channels, num_classes=self.num_classes,
                                       **head_args)
        if not self.d2det_head.with_mask:
            raise ValueError('D2DetROIHeads adapts the instance variant only: '
                             'MODEL.INSPLUG.D2DET.WITH_MASK must be True')
        self.box_cls_loss_weight = box_cls_loss_weight
        self.jitter = jitter
        self.max_num_reg = max_num_reg
        self.loss_weights = dict(LOSS_WEIGHTS, **(loss_weights or {}))
        self.release_broadcast = release_broadcast
        self.box_plus_one = box_plus_one
        self.legacy_plus_one = legacy_plus_one
        self.mask_score_weight = mask_score_weight
        self.mask_scores_as_scores = mask_scores_as_scores
        self.clip_refined = clip_refined
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg)
        d = cfg.MODEL.INSPLUG.D2DET
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f'D2DetROIHeads needs equal channels on {in_features}')
        ret.update(
            in_features=in_features, strides=[input_shape[f].stride for f in in_features],
            in_channels=channels.pop(),
            head_args=dict(roi_feat_size=d.REG_POOLER_RESOLUTION, num_convs=d.NUM_CONVS,
                           conv_channels=d.CONV_DIM, num_groups=d.NUM_GROUPS,
                           with_mask=d.WITH_MASK, deconv_channels=d.DECONV_DIM,
                           deconv_groups=d.DECONV_GROUPS, fc_channels=d.FC_DIM),
            pool_args=dict(out_size=d.POOLER_RESOLUTION, sample_per_part=d.SAMPLE_PER_PART,
                           trans_std=d.TRANS_STD, deform_fc_channels=d.DEFORM_FC_DIM),
            box_fc_dim=d.BOX_FC_DIM, box_cls_loss_weight=d.BOX_CLS_LOSS_WEIGHT, jitter=d.JITTER,
            max_num_reg=d.MAX_NUM_REG,
            loss_weights=dict(reg=d.LOSS_REG_WEIGHT, overlap=d.LOSS_OVERLAP_WEIGHT,
                              mask=d.LOSS_MASK_WEIGHT, mask_iou=d.LOSS_MASK_IOU_WEIGHT),
            release_broadcast=d.RELEASE_BROADCAST, box_plus_one=d.BOX_PLUS_ONE,
            legacy_plus_one=d.LEGACY_PLUS_ONE, mask_score_weight=d.MASK_SCORE_WEIGHT,
            mask_scores_as_scores=d.MASK_SCORES_AS_SCORES, clip_refined=d.CLIP_REFINED,
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_nms_thresh=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)
        return ret

    # ------------------------------------------------------------------ features
    def _pool(self, features, boxes, discriminative):
        feats = [features[f] for f in self.in_features]
        rois = convert_boxes_to_pooler_format(boxes)
        levels = roi_levels(rois, len(feats), plus_one=self.legacy_plus_one)
        if discriminative:
            size = self.box_pools[0].output_size
            return pool_levels(self.box_pools, feats, rois, levels, self.in_channels, size)
        if self.legacy_plus_one:  # mmdet 1.x RoIAlign spans x1 .. x2 + 1
            rois = torch.cat([rois[:, :3], rois[:, 3:5] + 1], 1)
        size = self.reg_pools[0].output_size
        return pool_levels(self.reg_pools, feats, rois, levels, self.in_channels, size)

    def box_logits(self, features, boxes):
        """(R, K + 1) class logits of the boxes (list of B ``Boxes``)."""
        x = self._pool(features, boxes, True).flatten(1)
        for fc in self.box_head.shared_fcs:
            x = F.relu(fc(x))
        return self.box_head.fc_cls(x)

    # ------------------------------------------------------------------ training
    def dense_loss(self, features, fg_proposals, targets):
        """Losses of the dense-regression head on the jittered foreground proposals."""
        boxes, gts, labels, masks, ratios = [], [], [], [], []
        size = 4 * self.d2det_head.map_size
        for props, tgt in zip(fg_proposals, targets):  # one iteration per image
            pos = props.proposal_boxes.tensor
            offsets = pos.new_empty(pos.shape[0], 4).uniform_(-self.jitter, self.jitter)
            jittered = jitter_boxes(pos, offsets, props.image_size)
            boxes.append(jittered)
            gts.append(props.gt_boxes.tensor)
            labels.append(props.gt_classes)
            if len(props) == 0:
                masks.append(pos.new_zeros(0, size, size))
                ratios.append(pos.new_zeros(0))
                continue
            if not props.has('gt_masks'):
                raise KeyError('D2DetROIHeads needs gt_masks: the dataset needs "segmentation" '
                               'and MODEL.MASK_ON must be True')
            masks.append(props.gt_masks.crop_and_resize(jittered, size).to(pos.dtype))
            whole = instances_mask_tensor(tgt, pos.device)
            ratios.append(mask_area_ratios(jittered, whole, props.gt_index))
        reg_feats = self._pool(features, [Boxes(b) for b in boxes], False)
        idx = sample_regression_rois(reg_feats.shape[0], self.max_num_reg, reg_feats.device)
        return dense_losses(self.d2det_head, reg_feats, torch.cat(boxes), torch.cat(gts),
                            torch.cat(labels).long(), idx, torch.cat(masks), torch.cat(ratios),
                            self.loss_weights, self.release_broadcast, self.box_plus_one)

    def forward(self, images, features, proposals, targets=None):
        del images
        if not self.training:
            return self.predict(features, proposals), {}
        if not targets:
            raise ValueError('D2DetROIHeads needs the ground-truth targets in training')
        for t in targets:  # the matched GT index travels with the sampled proposals
            t.gt_index = torch.arange(len(t), device=t.gt_boxes.device)
        proposals = self.label_and_sample_proposals(proposals, targets)
        logits = self.box_logits(features, [p.proposal_boxes for p in proposals])
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        losses = {'loss_cls': self.box_cls_loss_weight * F.cross_entropy(logits, gt_classes)}
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        losses.update(self.dense_loss(features, fg, targets))
        return proposals, losses

    # ----------------------------------------------------------------- inference
    def predict(self, features, proposals):
        boxes = [p.proposal_boxes for p in proposals]
        scores = F.softmax(self.box_logits(features, boxes), -1).split([len(b) for b in boxes])
        # no box regression: every class keeps the proposal (clipped) as its box
        instances, _ = fast_rcnn_inference(
            [b.tensor for b in boxes], scores, [p.image_size for p in proposals],
            self.test_score_thresh, self.test_nms_thresh, self.test_topk_per_image)
        counts = [len(i) for i in instances]
        if sum(counts) == 0:
            for inst in instances:
                inst.pred_masks = features[self.in_features[0]].new_zeros(0, 1, 28, 28)
                inst.mask_scores = inst.scores
            return instances
        dets = [i.pred_boxes for i in instances]
        refined = refine_boxes(self.d2det_head, self._pool(features, dets, False),
                               torch.cat([d.tensor for d in dets])).split(counts)
        for inst, ref in zip(instances, refined):
            inst.pred_boxes = Boxes(ref)
            if self.clip_refined:
                inst.pred_boxes.clip(inst.image_size)
        labels = torch.cat([i.pred_classes for i in instances]).long()
        box_scores = torch.cat([i.scores for i in instances])
        probs, mscores = instance_masks(
            self.d2det_head, self._pool(features, [i.pred_boxes for i in instances], False),
            labels, box_scores, self.mask_score_weight)
        for inst, prob, mscore in zip(instances, probs.split(counts), mscores.split(counts)):
            inst.pred_masks = prob[:, None]
            inst.mask_scores = mscore
            if self.mask_scores_as_scores:
                inst.scores = mscore
        return instances
