"""MMDetection adapter of :mod:`insplug.core.instancefcn`.

``InstanceFCN``: backbone (+ optional neck) -> one stride-S feature map ->
:class:`~insplug.core.instancefcn.InstanceFCNHead`. Training resizes the batch by one random
scale of ``train_cfg.scales`` per iteration (the paper trains on an image pyramid) and returns
``loss_objectness`` + ``loss_segment`` (:func:`~insplug.core.instancefcn.batch_loss`).
Inference runs the network on each scale of ``test_cfg.scales`` and keeps class-agnostic
segment proposals (label 0) with objectness scores and boxes of the masks
(:func:`~insplug.core.instancefcn.batch_proposals`).

With ``classifier`` (InstanceFCN's instance semantic segmentation: "segments, then
classified"), :class:`~insplug.core.instancefcn.SegmentClassifier` (MNC's stage 3) pools the
same trunk features on each proposal's box and mask: training adds ``loss_seg_cls`` on the
batch's own (detached) proposals, inference classifies the best ``num_proposals`` proposals
and returns class-aware instances (softmax scores, per-class box NMS).

Shapes: B images, (Hp, Wp) the padded batch.
"""
from typing import Optional

import torch
from mmdet.models.detectors import BaseDetector
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.instancefcn import (DEFAULT_CLS_TEST_CFG, DEFAULT_CLS_TRAIN_CFG,
                                      DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG, InstanceFCNHead,
                                      SegmentClassifier, batch_loss, batch_proposals,
                                      resize_batch)
from insplug.mmdet.deepmask.detector import _gt_masks_tensor
from insplug.registry import MODELS


@MODELS.register_module()
class InstanceFCN(BaseDetector):
    """Instance-sensitive FCN (Dai et al., ECCV 2016): class-agnostic segment proposals, or
    with ``classifier`` the proposals classified into class-aware instances.

    Args:
        backbone: an mmdet backbone config giving (at ``feature_index``) a stride-``stride``
            map (the paper: VGG-16 with stride-8 conv5; here e.g. a dilated ResNet).
        head: :class:`~insplug.core.instancefcn.InstanceFCNHead` arguments.
        stride: S of that map.
        neck, feature_index: optional neck; which output level feeds the head (-1: last).
        train_cfg / test_cfg: keys of ``insplug.core.instancefcn.DEFAULT_TRAIN_CFG`` /
            ``DEFAULT_TEST_CFG``.
        classifier: optional :class:`~insplug.core.instancefcn.SegmentClassifier` arguments
            (``num_classes``, ``fc_channels``, ...; ``in_channels`` defaults to the head's)
            plus ``train_cfg`` / ``test_cfg`` (keys of ``DEFAULT_CLS_TRAIN_CFG`` /
            ``DEFAULT_CLS_TEST_CFG``). None: class-agnostic proposals (label 0).
    """

    def __init__(self, backbone: dict, head: dict, stride: int = 8, neck: Optional[dict] = None,
                 feature_index: int = -1, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, classifier: Optional[dict] = None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.head = InstanceFCNHead(**head)
        self.stride, self.feature_index = stride, feature_index
        self.ifcn_train_cfg = dict(DEFAULT_TRAIN_CFG, **(train_cfg or {}))
        self.ifcn_test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        self.classifier = None
        if classifier is not None:
            classifier = dict(classifier)
            self.cls_train_cfg = dict(DEFAULT_CLS_TRAIN_CFG, **classifier.pop('train_cfg', {}))
            self.cls_test_cfg = dict(DEFAULT_CLS_TEST_CFG, **classifier.pop('test_cfg', {}))
            classifier.setdefault('in_channels', head['in_channels'])
            self.classifier = SegmentClassifier(**classifier)

    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        x = self.backbone(batch_inputs)
        if self.neck is not None:
            x = self.neck(x)
        return x[self.feature_index] if isinstance(x, (list, tuple)) else x

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        return self.head(self.extract_feat(batch_inputs))

    def _forward_with_feat(self, batch_inputs: Tensor):
        """-> inst, obj, the trunk feature (what the segment classifier pools)."""
        feat = self.extract_feat(batch_inputs)
        return self.head(feat) + (feat,)

    _resized = staticmethod(resize_batch)

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        hp, wp = batch_inputs.shape[-2:]
        boxes = [s.gt_instances.bboxes for s in batch_data_samples]
        boxes = [b.tensor if hasattr(b, 'tensor') else b for b in boxes]
        masks = [_gt_masks_tensor(s.gt_instances.masks, hp, wp, batch_inputs.device)
                 for s in batch_data_samples]
        if self.classifier is None:
            return batch_loss(self._forward, batch_inputs, boxes, masks, self.stride,
                              self.head.window, self.ifcn_train_cfg)
        labels = [s.gt_instances.labels for s in batch_data_samples]
        return batch_loss(self._forward_with_feat, batch_inputs, boxes, masks, self.stride,
                          self.head.window, self.ifcn_train_cfg, labels, self.classifier,
                          self.cls_train_cfg)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        sizes, box_scales = [], []
        for s in batch_data_samples:
            if rescale:
                sizes.append(tuple(s.metainfo['ori_shape'][:2]))
                box_scales.append(1.0 / float(s.metainfo.get('scale_factor', (1.0, 1.0))[0]))
            else:
                sizes.append(tuple(s.metainfo['img_shape'][:2]))
                box_scales.append(1.0)
        results = []
        if self.classifier is None:
            outs = batch_proposals(self._forward, batch_inputs, sizes, box_scales, self.stride,
                                   self.head.window, self.ifcn_test_cfg)
        else:
            outs = batch_proposals(self._forward_with_feat, batch_inputs, sizes, box_scales,
                                   self.stride, self.head.window, self.ifcn_test_cfg,
                                   self.classifier, self.cls_test_cfg)
        for out in outs:
            masks, scores, boxes = out[:3]
            inst = InstanceData()
            inst.masks, inst.scores, inst.bboxes = masks, scores, boxes
            inst.labels = out[3] if len(out) > 3 else torch.zeros_like(scores, dtype=torch.long)
            results.append(inst)
        return self.add_pred_to_datasample(batch_data_samples, results)
