"""InstanceFCN for detectron2: the ``InstanceFCN`` meta-architecture (class-agnostic segment
proposals; with ``CLASSIFIER.ENABLED`` the proposals are classified by
:class:`insplug.core.instancefcn.SegmentClassifier`, MNC's stage 3, into class-aware instances).

Shapes: B images, (Hp, Wp) the padded batch, (H_i, W_i) image i's output size, K proposals.

A detectron2 backbone (``build_backbone``) gives the feature ``IN_FEATURE`` (its stride is the
window stride S); :class:`insplug.core.instancefcn.InstanceFCNHead` (parameters ``head.*`` as in
the mmdet adapter) gives the k*k instance-sensitive maps and objectness; training and inference
are :func:`insplug.core.instancefcn.batch_loss` / :func:`~insplug.core.instancefcn.batch_proposals`.
detectron2's ResNet cannot dilate res4, so a stride-8 trunk here is ``res3`` (or a custom
backbone); the mmdet full config uses a dilated ResNet-50.

yacs::

    MODEL.META_ARCHITECTURE: InstanceFCN
    MODEL.INSPLUG.INSTANCEFCN.*   # NUM_CLASSES (1, proposals are class-agnostic), IN_FEATURE,
                                  # FEAT_CHANNELS, K, WINDOW, TRAIN_SCALES, NUM_SAMPLES,
                                  # POS_FRACTION, MASK_WEIGHT, OBJ_RATIO, CENTER_SHIFT,
                                  # SCALE_TOLERANCE, TEST_SCALES, PRE_NMS, MASK_THR, NMS_IOU,
                                  # MAX_PER_IMG
    MODEL.INSPLUG.INSTANCEFCN.CLASSIFIER.*   # ENABLED (False), FC_CHANNELS, ROI_SIZE, MASK_SIZE,
        # BINARIZE_THR, REDUCE_CHANNELS (0: none); training: TRAIN_PROPOSALS, TRAIN_PRE_NMS
        # (0: PRE_NMS of the proposals' defaults), ROIS_PER_IMG, FRACTIONS, THR_LO, THR_HI,
        # FG_DET_THR, FG_SEG_THR, ADD_GT, LOSS_WEIGHT, DETACH_FEATURES,
        # TRAIN_PROPOSALS_LOSS; inference:
        # TEST_PROPOSALS, TEST_SCALE, SCORE_THR, CLS_NMS_IOU, MAX_PER_CLASS, CLS_MAX_PER_IMG
        # (NUM_CLASSES above is the classifier's K)
"""
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from insplug.core.instancefcn import (DEFAULT_CLS_TEST_CFG, DEFAULT_CLS_TRAIN_CFG,
                                      DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG, InstanceFCNHead,
                                      SegmentClassifier, batch_loss, batch_proposals)
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['InstanceFCN']


@register_config_node('INSTANCEFCN')
def _instancefcn_node():
    head = signature_defaults(InstanceFCNHead)
    node = CN()
    node.NUM_CLASSES = 1
    node.IN_FEATURE = 'res3'
    node.FEAT_CHANNELS = head['feat_channels']
    node.K = head['k']
    node.WINDOW = head['window']
    t, s = DEFAULT_TRAIN_CFG, DEFAULT_TEST_CFG
    node.TRAIN_SCALES = list(t['scales'])
    node.NUM_SAMPLES = t['num_samples']
    node.POS_FRACTION = t['pos_fraction']
    node.MASK_WEIGHT = t['mask_weight']
    node.OBJ_RATIO = t['obj_ratio']
    node.CENTER_SHIFT = t['center_shift']
    node.SCALE_TOLERANCE = t['scale_tolerance']
    node.TEST_SCALES = list(s['scales'])
    node.PRE_NMS = s['pre_nms']
    node.MASK_THR = s['mask_thr']
    node.NMS_IOU = s['nms_iou']
    node.MAX_PER_IMG = s['max_per_img']
    c, ct, cs = signature_defaults(SegmentClassifier), DEFAULT_CLS_TRAIN_CFG, DEFAULT_CLS_TEST_CFG
    node.CLASSIFIER = CN()
    node.CLASSIFIER.ENABLED = False
    node.CLASSIFIER.FC_CHANNELS = c['fc_channels']
    node.CLASSIFIER.ROI_SIZE = c['roi_size']
    node.CLASSIFIER.MASK_SIZE = c['mask_size']
    node.CLASSIFIER.BINARIZE_THR = c['binarize_thr']
    node.CLASSIFIER.REDUCE_CHANNELS = 0
    node.CLASSIFIER.TRAIN_PROPOSALS = ct['num_proposals']
    node.CLASSIFIER.TRAIN_PRE_NMS = 0
    node.CLASSIFIER.ROIS_PER_IMG = ct['rois_per_img']
    node.CLASSIFIER.FRACTIONS = list(ct['fractions'])
    node.CLASSIFIER.THR_LO = list(ct['thr_lo'])
    node.CLASSIFIER.THR_HI = list(ct['thr_hi'])
    node.CLASSIFIER.FG_DET_THR = ct['fg_det_thr']
    node.CLASSIFIER.FG_SEG_THR = ct['fg_seg_thr']
    node.CLASSIFIER.ADD_GT = ct['add_gt']
    node.CLASSIFIER.LOSS_WEIGHT = ct['loss_weight']
    node.CLASSIFIER.DETACH_FEATURES = ct['detach_features']
    node.CLASSIFIER.TRAIN_PROPOSALS_LOSS = ct['train_proposals']
    node.CLASSIFIER.TEST_PROPOSALS = cs['num_proposals']
    node.CLASSIFIER.TEST_SCALE = cs['scale']
    node.CLASSIFIER.SCORE_THR = cs['score_thr']
    node.CLASSIFIER.CLS_NMS_IOU = cs['nms_iou']
    node.CLASSIFIER.MAX_PER_CLASS = cs['max_per_class']
    node.CLASSIFIER.CLS_MAX_PER_IMG = cs['max_per_img']
    return node


def _classifier_from_config(d, channels):
    """(SegmentClassifier, train options, test options) of the yacs node, or (None, {}, {})."""
    c = d.CLASSIFIER
    if not c.ENABLED:
        return None, {}, {}
    module = SegmentClassifier(channels, d.NUM_CLASSES, c.FC_CHANNELS, c.ROI_SIZE, c.MASK_SIZE,
                               c.BINARIZE_THR, c.REDUCE_CHANNELS or None)
    train = dict(num_proposals=c.TRAIN_PROPOSALS, pre_nms=c.TRAIN_PRE_NMS or None,
                 rois_per_img=c.ROIS_PER_IMG, fractions=tuple(c.FRACTIONS),
                 thr_lo=tuple(c.THR_LO), thr_hi=tuple(c.THR_HI), fg_det_thr=c.FG_DET_THR,
                 fg_seg_thr=c.FG_SEG_THR, add_gt=c.ADD_GT, loss_weight=c.LOSS_WEIGHT,
                 detach_features=c.DETACH_FEATURES,
                 train_proposals=c.TRAIN_PROPOSALS_LOSS)
    test = dict(num_proposals=c.TEST_PROPOSALS, scale=c.TEST_SCALE, score_thr=c.SCORE_THR,
                nms_iou=c.CLS_NMS_IOU, max_per_class=c.MAX_PER_CLASS,
                max_per_img=c.CLS_MAX_PER_IMG)
    return module, train, test


@META_ARCH_REGISTRY.register()
class InstanceFCN(NormalisedInputs, nn.Module):
    """InstanceFCN class-agnostic segment proposals as ``Instances`` (``pred_masks``,
    ``pred_boxes`` from the masks, ``scores`` = sigmoid objectness, ``pred_classes`` = 0), or
    with a ``classifier`` the classified segments (``scores`` = softmax class probability,
    ``pred_classes`` in [0, NUM_CLASSES))."""

    num_classes_key = 'MODEL.INSPLUG.INSTANCEFCN.NUM_CLASSES'

    @configurable
    def __init__(self, *, backbone: nn.Module, in_feature: str, head: InstanceFCNHead,
                 train_opts: dict, test_opts: dict, pixel_mean, pixel_std,
                 classifier: nn.Module = None, cls_train_opts: dict = None,
                 cls_test_opts: dict = None):
        super().__init__()
        self.backbone, self.in_feature, self.head = backbone, in_feature, head
        self.classifier = classifier
        self.cls_train_opts = dict(DEFAULT_CLS_TRAIN_CFG, **(cls_train_opts or {}))
        self.cls_test_opts = dict(DEFAULT_CLS_TEST_CFG, **(cls_test_opts or {}))
        self.stride = backbone.output_shape()[in_feature].stride
        self.train_opts = dict(DEFAULT_TRAIN_CFG, **train_opts)
        self.test_opts = dict(DEFAULT_TEST_CFG, **test_opts)
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.INSPLUG.INSTANCEFCN
        backbone = build_backbone(cfg)
        channels = backbone.output_shape()[d.IN_FEATURE].channels
        classifier, cls_train, cls_test = _classifier_from_config(d, channels)
        return dict(
            classifier=classifier, cls_train_opts=cls_train, cls_test_opts=cls_test,
            backbone=backbone, in_feature=d.IN_FEATURE,
            head=InstanceFCNHead(channels, d.FEAT_CHANNELS, d.K, d.WINDOW),
            train_opts=dict(scales=tuple(d.TRAIN_SCALES), num_samples=d.NUM_SAMPLES,
                            pos_fraction=d.POS_FRACTION, mask_weight=d.MASK_WEIGHT,
                            obj_ratio=d.OBJ_RATIO, center_shift=d.CENTER_SHIFT,
                            scale_tolerance=d.SCALE_TOLERANCE),
            test_opts=dict(scales=tuple(d.TEST_SCALES), pre_nms=d.PRE_NMS,
                           mask_thr=d.MASK_THR, nms_iou=d.NMS_IOU,
                           max_per_img=d.MAX_PER_IMG),
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD))

    def _forward(self, x):
        return self.head(self.backbone(x)[self.in_feature])

    def _forward_with_feat(self, x):
        feat = self.backbone(x)[self.in_feature]
        return self.head(feat) + (feat,)

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        hp, wp = images.tensor.shape[-2:]
        if self.training:
            boxes, masks, labels = [], [], []
            for x in batched_inputs:
                g = x['instances'].to(self.device)
                boxes.append(g.gt_boxes.tensor)
                labels.append(g.gt_classes)
                m = instances_mask_tensor(g, self.device).float()
                full = m.new_zeros(m.shape[0], hp, wp)
                full[:, :m.shape[1], :m.shape[2]] = m[:, :hp, :wp]
                masks.append(full)
            if self.classifier is None:
                return batch_loss(self._forward, images.tensor, boxes, masks, self.stride,
                                  self.head.window, self.train_opts)
            return batch_loss(self._forward_with_feat, images.tensor, boxes, masks, self.stride,
                              self.head.window, self.train_opts, labels, self.classifier,
                              self.cls_train_opts)
        sizes = [(x.get('height', h), x.get('width', w))
                 for x, (h, w) in zip(batched_inputs, images.image_sizes)]
        box_scales = [out[1] / w for out, (h, w) in zip(sizes, images.image_sizes)]
        results = []
        if self.classifier is None:
            outs = batch_proposals(self._forward, images.tensor, sizes, box_scales, self.stride,
                                   self.head.window, self.test_opts)
        else:
            outs = batch_proposals(self._forward_with_feat, images.tensor, sizes, box_scales,
                                   self.stride, self.head.window, self.test_opts,
                                   self.classifier, self.cls_test_opts)
        for out, size in zip(outs, sizes):
            masks, scores, boxes = out[:3]
            inst = Instances(size)
            inst.pred_boxes = Boxes(boxes)
            inst.scores = scores
            inst.pred_classes = (out[3] if len(out) > 3
                                 else torch.zeros_like(scores, dtype=torch.long))
            inst.pred_masks = masks
            results.append({'instances': inst})
        return results
