"""PRM and CountSeg detectors (mmdet API): trained from image-level labels / counts only.

``PRMSegmentor``: a fully convolutional classifier (backbone's last stage + 1x1 conv to K class
response maps), peak stimulation in training (multi-label soft-margin loss), peak
back-propagation and proposal retrieval at test time (``insplug.core.prm``).

``CountSegSegmentor``: the same trunk with a 1x1 conv to ``fc_channels`` maps split in two
halves, each through BN-ReLU-1x1 conv to K maps: the classification branch (peak stimulation)
and the density branch, trained with the two-stage lower-count losses of
``insplug.core.countseg``; test: PRM retrieval with the density term.

The wiring (heads, maps, losses, retrieval) is ``insplug.core.prm.model`` (shared with the
detectron2 adapter). Predictions are ``InstanceData`` (masks, labels, scores, bboxes from the
masks) for CocoMetric.
"""
from typing import Optional

import torch
from mmdet.models.detectors.base import BaseDetector
from mmengine.structures import InstanceData

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.prm.model import (COUNTSEG_TEST_CFG, COUNTSEG_TRAIN_CFG, PRM_TEST_CFG,
                                    PRM_TRAIN_CFG, CountSegMaps, PRMMaps, rescale_masks)
from insplug.registry import MODELS, TASK_UTILS

__all__ = ['PRMSegmentor', 'CountSegSegmentor', 'PRM_TRAIN_CFG', 'PRM_TEST_CFG',
           'COUNTSEG_TRAIN_CFG', 'COUNTSEG_TEST_CFG']


def _image_field(data_samples, key, device):
    return torch.stack([torch.as_tensor(s.metainfo[key]) for s in data_samples]).to(device)


@MODELS.register_module()
class PRMSegmentor(PRMMaps, BaseDetector):
    """Peak Response Mapping (Zhou et al., CVPR 2018).

    Args:
        backbone: config of a trunk whose LAST output is used (e.g. mmdet ResNet,
            ``out_indices=(3,)``).
        num_classes: K.
        in_channels: channels of that output.
        proposal_source: TASK_UTILS config (``FileProposals`` / ``ColourRegionProposals``).
        train_cfg / test_cfg: override ``PRM_TRAIN_CFG`` / ``PRM_TEST_CFG``.
    """
    default_train_cfg = PRM_TRAIN_CFG
    default_test_cfg = PRM_TEST_CFG

    def __init__(self, backbone: dict, num_classes: int, in_channels: int,
                 proposal_source: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self._build_heads(in_channels)
        self.train_cfg = dict(self.default_train_cfg, **(train_cfg or {}))
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        self.proposal_source = TASK_UTILS.build(
            proposal_source or dict(type='ColourRegionProposals'))

    def extract_feat(self, inputs):
        feats = self.backbone(inputs)
        return feats[-1] if isinstance(feats, (list, tuple)) else feats

    def _forward(self, inputs, data_samples=None):
        return self._test_maps(inputs)[0]

    def loss(self, inputs, data_samples):
        labels = _image_field(data_samples, 'gt_image_labels', inputs.device)
        return self.image_level_loss(inputs, labels)

    def predict(self, inputs, data_samples, rescale: bool = True):
        shapes = [tuple(s.metainfo['img_shape'][:2]) for s in data_samples]
        found = self.predict_instances(
            inputs, shapes,
            lambda i: self.proposal_source(inputs[i], data_samples[i], self.data_preprocessor))
        results = []
        for (masks, labels, scores), sample in zip(found, data_samples):
            if rescale:
                masks = rescale_masks(masks, sample.metainfo['ori_shape'][:2])
            out = InstanceData()
            out.masks = masks.bool()
            out.labels = labels.long()
            out.scores = scores.float()
            out.bboxes = masks_to_boxes(out.masks).float() if masks.shape[0] else \
                masks.new_zeros((0, 4), dtype=torch.float32)
            results.append(out)
        return self.add_pred_to_datasample(data_samples, results)


@MODELS.register_module()
class CountSegSegmentor(CountSegMaps, PRMSegmentor):
    """CountSeg / ILC (Cholakkal et al., CVPR 2019): image-level lower-count supervision.

    Args:
        fc_channels: output channels of the 1x1 conv after the trunk (release: 60 = 3 K for
            VOC); each half feeds one branch.
        train_cfg: ``stage1_iters`` iterations with the stage-1 loss, then stage 2 (the
            release: 20 of 300 epochs on VOC); the rest as ``COUNTSEG_TRAIN_CFG``.
    """
    default_train_cfg = COUNTSEG_TRAIN_CFG
    default_test_cfg = COUNTSEG_TEST_CFG

    def __init__(self, *args, fc_channels: Optional[int] = None, **kwargs):
        self._fc_channels = fc_channels
        self._local_iter = 0
        super().__init__(*args, **kwargs)

    def _forward(self, inputs, data_samples=None):
        return self._test_maps(inputs)

    def _current_iter(self):
        try:
            from mmengine.logging import MessageHub
            it = MessageHub.get_current_instance().get_info('iter')
        except Exception:  # noqa: BLE001 - outside a runner
            it = None
        if it is None:
            it = self._local_iter
            self._local_iter += 1
        return it

    def loss(self, inputs, data_samples):
        counts = _image_field(data_samples, 'gt_image_counts', inputs.device)
        return self.image_level_loss(inputs, counts, self._current_iter())
