"""Recurrent attention (Ren & Zemel, CVPR 2017) as an mmdet detector:
``RecurrentAttentionSegmentor``.

Shapes: B images, (Hp, Wp) the padded batch, (H, W) the network's fixed input size, T steps.

The adapter resizes each image's valid region to the network input
(:func:`insplug.core.recurrent_attention.resize_to_input`), gathers the GT masks at that size,
reads the training iteration from mmengine's ``MessageHub`` for the GT-feeding schedule, and
calls :func:`insplug.core.recurrent_attention.training.training_losses`; prediction packs
:func:`insplug.core.recurrent_attention.instances_from_steps` into ``InstanceData`` (masks at
the original size, boxes from the masks). All maths is the core's.
"""
from typing import Dict, List, Optional

import torch
from mmdet.models.detectors.base import BaseDetector
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.recurrent_attention import (RecurrentAttentionNet, instances_from_steps,
                                              masks_to_input, resize_to_input)
from insplug.core.recurrent_attention.training import training_losses
from insplug.registry import MODELS


def current_iter() -> int:
    """The runner's training iteration (0 outside a runner)."""
    try:
        return int(MessageHub.get_current_instance().get_info('iter', 0) or 0)
    except Exception:  # noqa: BLE001 - no message hub: not under a runner
        return 0


@MODELS.register_module()
class RecurrentAttentionSegmentor(BaseDetector):
    """End-to-end recurrent attention instance segmentation.

    Args:
        net: keyword arguments of :class:`insplug.core.recurrent_attention.RecurrentAttentionNet`
            (``num_classes`` is taken from ``num_classes``).
        num_classes: dataset classes (1: the release, no class output).
        train_cfg: ``knob`` (GT-feeding schedule, see
            :func:`insplug.core.recurrent_attention.training.sample_knobs`) and
            ``loss_weights`` (``box``, ``segm``, ``score``, ``cls``).
        test_cfg: ``score_thr`` (0.5), ``mask_threshold`` (0.3), ``stop_rule``
            ('threshold' as released, or 'first_below'), ``one_label`` (True).
    """

    def __init__(self, net: dict, num_classes: int = 1, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_classes = num_classes
        self.net = RecurrentAttentionNet(num_classes=num_classes, **net)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(dict(score_thr=0.5, mask_threshold=0.3,
                                  stop_rule='threshold', one_label=True), **(test_cfg or {}))

    @property
    def input_size(self):
        return (self.net.height, self.net.width)

    def _inputs(self, batch_inputs: Tensor, batch_data_samples) -> Tensor:
        sizes = [s.metainfo.get('img_shape', batch_inputs.shape[-2:])[:2]
                 for s in batch_data_samples] if batch_data_samples else \
            [batch_inputs.shape[-2:]] * batch_inputs.shape[0]
        return resize_to_input(batch_inputs, sizes, self.input_size)

    def extract_feat(self, batch_inputs: Tensor):
        return self.net(batch_inputs)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        return self.net(self._inputs(batch_inputs, batch_data_samples))

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> Dict[str, Tensor]:
        images = self._inputs(batch_inputs, batch_data_samples)
        masks, labels = [], []
        for sample in batch_data_samples:
            gt = sample.gt_instances
            m = gt.masks.to_tensor(dtype=torch.uint8, device=images.device) if len(gt) else \
                torch.zeros(0, *batch_inputs.shape[-2:], device=images.device)
            masks.append(masks_to_input(m, sample.metainfo['img_shape'][:2], self.input_size))
            labels.append(gt.labels.to(images.device))
        return training_losses(self.net, images, masks, labels, current_iter(),
                               self.train_cfg.get('knob'), None,
                               self.train_cfg.get('loss_weights'))

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        out = self._forward(batch_inputs, batch_data_samples)
        results: List[InstanceData] = []
        for b, sample in enumerate(batch_data_samples):
            size = sample.metainfo['ori_shape'][:2] if rescale else \
                sample.metainfo['img_shape'][:2]
            cls = out['cls_logits'][b] if out['cls_logits'] is not None else None
            masks, scores, labels = instances_from_steps(
                out['masks'][b], out['scores'][b], cls, size,
                self.test_cfg['score_thr'], self.test_cfg['mask_threshold'],
                self.test_cfg['stop_rule'], self.test_cfg['one_label'])
            res = InstanceData()
            res.masks = masks
            res.scores = scores
            res.labels = labels
            res.bboxes = masks_to_boxes(masks)
            results.append(res)
        return self.add_pred_to_datasample(batch_data_samples, results)
