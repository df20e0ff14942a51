"""MMDetection adapter of :mod:`insplug.core.instancefcn`.

``InstanceFCN``: backbone (+ optional neck) -> one stride-S feature map ->
:class:`~insplug.core.instancefcn.InstanceFCNHead`. Training resizes the batch by one random
scale of ``train_cfg.scales`` per iteration (the paper trains on an image pyramid), assigns
windows (:func:`~insplug.core.instancefcn.window_assignment`) and returns ``loss_objectness``
+ ``loss_segment``. Inference runs the network on each scale of ``test_cfg.scales`` and keeps
class-agnostic segment proposals (label 0) with objectness scores and boxes of the masks.

Shapes: B images, (Hp, Wp) the padded batch, (h, w) the feature map of one scale.
"""
import random
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.instancefcn import (InstanceFCNHead, cell_masks, instancefcn_loss, propose,
                                      window_assignment)
from insplug.registry import MODELS

# the paper's settings (Sec. 4): image pyramid shorter side 600 x 1.5^{-4..1} relative to a
# 600-px input (scales 1.5^{-4..1}); 256 windows per image, positives : negatives = 1 : 1
DEFAULT_TRAIN_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), num_samples=256,
                         pos_fraction=0.5, mask_weight=1.0, obj_ratio=128 / 224,
                         center_shift=16 / 224, scale_tolerance=1.5 ** 0.5)
DEFAULT_TEST_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), pre_nms=1000,
                        mask_thr=0.5, nms_iou=0.8, max_per_img=1000)


def _gt_masks(masks, height: int, width: int, device) -> Tensor:
    if isinstance(masks, PolygonMasks):
        masks = masks.to_bitmap()
    arr = torch.as_tensor(masks.masks if isinstance(masks, BitmapMasks) else masks,
                          device=device)
    out = torch.zeros(arr.shape[0], height, width, dtype=torch.float32, device=device)
    h, w = min(height, arr.shape[1]), min(width, arr.shape[2])
    out[:, :h, :w] = arr[:, :h, :w].float()
    return out


@MODELS.register_module()
class InstanceFCN(BaseDetector):
    """Instance-sensitive FCN (Dai et al., ECCV 2016), class-agnostic segment proposals.

    Args:
        backbone: an mmdet backbone config giving (at ``feature_index``) a stride-``stride``
            map (the paper: VGG-16 with stride-8 conv5; here e.g. a dilated ResNet).
        head: :class:`~insplug.core.instancefcn.InstanceFCNHead` arguments.
        stride: S of that map.
        neck, feature_index: optional neck; which output level feeds the head (-1: last).
        train_cfg / test_cfg: keys of ``DEFAULT_TRAIN_CFG`` / ``DEFAULT_TEST_CFG``.
    """

    def __init__(self, backbone: dict, head: dict, stride: int = 8, neck: Optional[dict] = None,
                 feature_index: int = -1, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.head = InstanceFCNHead(**head)
        self.stride, self.feature_index = stride, feature_index
        self.ifcn_train_cfg = dict(DEFAULT_TRAIN_CFG, **(train_cfg or {}))
        self.ifcn_test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))

    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        x = self.backbone(batch_inputs)
        if self.neck is not None:
            x = self.neck(x)
        return x[self.feature_index] if isinstance(x, (list, tuple)) else x

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        return self.head(self.extract_feat(batch_inputs))

    def _resized(self, batch_inputs: Tensor, scale: float) -> Tensor:
        if scale == 1.0:
            return batch_inputs
        hp, wp = batch_inputs.shape[-2:]
        size = (max(1, int(round(hp * scale))), max(1, int(round(wp * scale))))
        return F.interpolate(batch_inputs, size, mode='bilinear', align_corners=False)

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        cfg = self.ifcn_train_cfg
        scale = float(random.choice(list(cfg['scales'])))
        hp, wp = batch_inputs.shape[-2:]
        x = self._resized(batch_inputs, scale)
        inst, obj = self.head(self.extract_feat(x))
        h, w = obj.shape[-2:]
        assignments, cells = [], []
        for s in batch_data_samples:  # per image targets
            boxes = s.gt_instances.bboxes
            boxes = (boxes.tensor if hasattr(boxes, 'tensor') else boxes).float() * scale
            masks = _gt_masks(s.gt_instances.masks, hp, wp, x.device)
            if masks.shape[0]:
                masks = F.interpolate(masks[:, None], x.shape[-2:], mode='bilinear',
                                      align_corners=False)[:, 0]
            else:
                masks = masks.new_zeros((0,) + tuple(x.shape[-2:]))
            assignments.append(window_assignment(
                boxes, h, w, self.stride, self.head.window, cfg['obj_ratio'],
                cfg['center_shift'], cfg['scale_tolerance']))
            cells.append(cell_masks(masks >= 0.5, self.stride, h, w))
        return instancefcn_loss(inst, obj, assignments, cells, self.head.window,
                                cfg['num_samples'], cfg['pos_fraction'], cfg['mask_weight'])

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        cfg = self.ifcn_test_cfg
        hp, wp = batch_inputs.shape[-2:]
        levels = []
        for s in cfg['scales']:  # a fixed, small number of pyramid levels
            x = self._resized(batch_inputs, float(s))
            inst, obj = self.head(self.extract_feat(x))
            # the level's actual resize factor (rounded sizes)
            levels.append((inst, obj, x.shape[-1] / wp))
        results = []
        for i, sample in enumerate(batch_data_samples):
            ih, iw = sample.metainfo['img_shape'][:2]
            if rescale:
                oh, ow = sample.metainfo['ori_shape'][:2]
                sf = sample.metainfo.get('scale_factor', (1.0, 1.0))
                box_scale, height, width = 1.0 / float(sf[0]), oh, ow
            else:
                box_scale, height, width = 1.0, ih, iw
            per_scale = [(inst[i], obj[i], s) for inst, obj, s in levels]
            masks, scores, boxes = propose(
                per_scale, self.head.window, self.stride, height, width,
                pre_nms=cfg['pre_nms'], mask_thr=cfg['mask_thr'], nms_iou=cfg['nms_iou'],
                max_per_img=cfg['max_per_img'], box_scale=box_scale)
            inst_data = InstanceData()
            inst_data.masks, inst_data.scores, inst_data.bboxes = masks, scores, boxes
            inst_data.labels = torch.zeros_like(scores, dtype=torch.long)
            results.append(inst_data)
        return self.add_pred_to_datasample(batch_data_samples, results)
