"""MMDetection adapters of :class:`insplug.core.deepmask.DeepMaskNet`.

* ``DeepMask``: the standalone model. Training samples the release's windows from each batch
  image (mask windows around objects, positive / negative score windows) and returns
  ``loss_mask`` + ``loss_score`` (``train_cfg.stage='deepmask'``) or ``loss_refine``
  (``'sharpmask'``: trunk and DeepMask heads frozen, as the release's second stage). Inference
  is the release's dense multi-scale pass; results are class-agnostic proposals (label 0) with
  masks, sigmoid scores and boxes from the masks.
* ``DeepMaskRPNHead``: the same network as a two-stage model's ``rpn_head``: its losses are the
  DeepMask losses and its proposals (boxes from masks) feed a stock roi_head. It needs the batch
  images, which ``DeepMaskMaskRCNN`` (a ``TwoStageDetector``) hands it.

Shapes: B images, (Hp, Wp) the padded batch, (h, w) an image's valid input size, K proposals.
"""
import copy
from typing import List, Optional

import torch
from mmdet.models.detectors import BaseDetector, TwoStageDetector
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.deepmask import DeepMaskNet, normalised_grey, pyramid_scales
from insplug.core.deepmask.model import DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG
from insplug.registry import MODELS

def _gt_masks_tensor(masks, height: int, width: int, device) -> Tensor:
    """BitmapMasks / PolygonMasks -> (N, height, width) uint8 (cropped / zero-padded)."""
    if isinstance(masks, PolygonMasks):
        masks = masks.to_bitmap()
    if isinstance(masks, BitmapMasks):
        arr = torch.as_tensor(masks.masks, device=device)
    else:
        arr = torch.as_tensor(masks, device=device)
    out = torch.zeros(arr.shape[0], height, width, dtype=torch.uint8, device=device)
    h, w = min(height, arr.shape[1]), min(width, arr.shape[2])
    out[:, :h, :w] = arr[:, :h, :w].to(torch.uint8)
    return out


class _DeepMaskMixin:
    """Shared wiring of the core network: window losses and batch proposals."""

    def _setup(self, net: dict, train_cfg: Optional[dict], test_cfg: Optional[dict],
               trunk_pretrained: Optional[str]):
        self.net = DeepMaskNet(**net)
        self.deepmask_train_cfg = dict(DEFAULT_TRAIN_CFG, **(train_cfg or {}))
        self.deepmask_test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        self.trunk_pretrained = trunk_pretrained
        if self.deepmask_train_cfg['stage'] == 'sharpmask':
            if self.net.refine is None:
                raise ValueError("train_cfg.stage='sharpmask' needs net.sharpmask")
            # the release's second stage updates only the refinement modules
            for module in (self.net.trunk, self.net.head):
                for p in module.parameters():
                    p.requires_grad_(False)

    def _load_trunk(self):
        if not self.trunk_pretrained:
            return
        from mmengine.runner.checkpoint import CheckpointLoader
        state = CheckpointLoader.load_checkpoint(self.trunk_pretrained, map_location='cpu')
        state = state.get('state_dict', state)
        own = self.net.trunk.state_dict()
        missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
        if missing:
            raise KeyError(f'{self.trunk_pretrained} lacks trunk weights {missing[:5]}')
        self.net.trunk.load_state_dict({k: v for k, v in state.items() if k in own},
                                       strict=False)

    def _preprocessor(self):
        return self.data_preprocessor

    def _pad_value(self, device) -> Tensor:
        pre = self._preprocessor()
        mean = pre.mean.flatten().tolist() if getattr(pre, '_enable_normalize', True) else [0] * 3
        std = pre.std.flatten().tolist() if getattr(pre, '_enable_normalize', True) else [1] * 3
        return normalised_grey(mean, std).to(device)

    def deepmask_losses(self, images: Tensor, data_samples) -> dict:
        cfg = self.deepmask_train_cfg
        hp, wp = images.shape[-2:]
        sizes = [tuple(s.metainfo['img_shape'][:2]) for s in data_samples]
        boxes = [s.gt_instances.bboxes for s in data_samples]
        boxes = [b.tensor if hasattr(b, 'tensor') else b for b in boxes]
        masks = [_gt_masks_tensor(s.gt_instances.masks, hp, wp, images.device)
                 for s in data_samples]
        samples = self.net.sample_windows(images, sizes, boxes, masks,
                                          self._pad_value(images.device), cfg)
        return self.net.loss_windows(samples, cfg['score_weight'], cfg['stage'])

    def deepmask_proposals(self, images: Tensor, data_samples, rescale: bool
                           ) -> List[InstanceData]:
        cfg = dict(self.deepmask_test_cfg)
        scales = pyramid_scales(cfg.pop('smin'), cfg.pop('smax'), cfg.pop('sstep'))
        sizes = [tuple(s.metainfo['img_shape'][:2]) for s in data_samples]
        out_sizes = [tuple(s.metainfo['ori_shape'][:2]) for s in data_samples] if rescale \
            else None
        results = self.net.propose_batch(images, sizes, self._pad_value(images.device),
                                         out_sizes, scales=scales, **cfg)
        out = []
        for res in results:
            inst = InstanceData()
            inst.bboxes = res['boxes']
            inst.scores = res['scores']
            inst.labels = torch.zeros_like(res['scores'], dtype=torch.long)
            inst.masks = res['masks']
            out.append(inst)
        return out


@MODELS.register_module()
class DeepMask(_DeepMaskMixin, BaseDetector):
    """DeepMask / SharpMask class-agnostic mask proposals (standalone).

    Args:
        net: :class:`~insplug.core.deepmask.DeepMaskNet` arguments.
        train_cfg / test_cfg: keys of ``insplug.core.deepmask.model.DEFAULT_TRAIN_CFG`` /
            ``DEFAULT_TEST_CFG`` (the release's values).
        trunk_pretrained: a checkpoint (e.g. 'torchvision://resnet50') for the trunk.
    """

    def __init__(self, net: dict, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, trunk_pretrained: Optional[str] = None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self._setup(net, train_cfg, test_cfg, trunk_pretrained)

    def init_weights(self):
        super().init_weights()
        self._load_trunk()

    def extract_feat(self, batch_inputs: Tensor):
        return self.net.trunk(batch_inputs)

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        return self.deepmask_losses(batch_inputs, batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        results = self.deepmask_proposals(batch_inputs, batch_data_samples, rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Dense score logits of the first pyramid scale... here: the window outputs of the
        whole batch treated as windows (for FLOP counting)."""
        return self.net.forward_windows(batch_inputs)


@MODELS.register_module()
class DeepMaskRPNHead(_DeepMaskMixin, BaseModule):
    """DeepMask as a two-stage model's ``rpn_head`` (use with :class:`DeepMaskMaskRCNN`).

    Args:
        net, trunk_pretrained: as :class:`DeepMask`.
        deepmask_train_cfg, deepmask_test_cfg: window sampling / proposal options
            (``test_cfg`` / ``train_cfg`` / ``num_classes`` (1) given by the two-stage detector
            are accepted and ignored: mmdet's rpn settings do not apply to mask proposals).
        min_box_size: proposals whose mask box is smaller are dropped (empty masks).
        freeze: keep the DeepMask weights fixed (a pre-trained DeepMask): no losses.
    """

    def __init__(self, net: dict, deepmask_train_cfg: Optional[dict] = None,
                 deepmask_test_cfg: Optional[dict] = None,
                 trunk_pretrained: Optional[str] = None, min_box_size: float = 1.0,
                 freeze: bool = False, train_cfg=None, test_cfg=None, num_classes: int = 1,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self._setup(net, deepmask_train_cfg, deepmask_test_cfg, trunk_pretrained)
        self.min_box_size, self.freeze = min_box_size, freeze
        self.images = None
        if freeze:
            for p in self.net.parameters():
                p.requires_grad_(False)

    def init_weights(self):
        super().init_weights()
        self._load_trunk()

    def _preprocessor(self):
        # the detector's data preprocessor, kept out of this module's children / state_dict
        pre = self.__dict__.get('_detector_preprocessor')
        if pre is None:
            raise RuntimeError('DeepMaskRPNHead needs DeepMaskMaskRCNN (the normalisation)')
        return pre

    def _proposals(self, batch_data_samples, rescale=False) -> List[InstanceData]:
        if self.images is None:
            raise RuntimeError('DeepMaskRPNHead needs the batch images: use it inside '
                               'DeepMaskMaskRCNN')
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            results = self.deepmask_proposals(self.images, batch_data_samples, rescale)
        self.net.train(was_training)
        out = []
        for inst in results:
            wh = inst.bboxes[:, 2:] - inst.bboxes[:, :2]
            keep = (wh >= self.min_box_size).all(1)
            prop = InstanceData()
            prop.bboxes = inst.bboxes[keep]
            prop.scores = inst.scores[keep]
            prop.labels = inst.labels[keep]
            out.append(prop)
        return out

    def loss(self, x, batch_data_samples) -> dict:
        if self.freeze:
            return {}
        return self.deepmask_losses(self.images, batch_data_samples)

    def loss_and_predict(self, x, batch_data_samples, proposal_cfg=None):
        return self.loss(x, batch_data_samples), self._proposals(batch_data_samples)

    def predict(self, x, batch_data_samples, rescale: bool = False) -> List[InstanceData]:
        return self._proposals(batch_data_samples, rescale)


@MODELS.register_module()
class DeepMaskMaskRCNN(TwoStageDetector):
    """A two-stage model (e.g. a stock Mask R-CNN roi_head) whose proposals come from
    :class:`DeepMaskRPNHead`; it only hands the batch images to the rpn head."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.rpn_head, DeepMaskRPNHead):
            raise TypeError('DeepMaskMaskRCNN needs rpn_head=dict(type="DeepMaskRPNHead", ...)')
        self.rpn_head.__dict__['_detector_preprocessor'] = self.data_preprocessor

    def _with_images(self, fn, batch_inputs, *args, **kwargs):
        self.rpn_head.images = batch_inputs
        try:
            return fn(batch_inputs, *args, **kwargs)
        finally:
            self.rpn_head.images = None

    def loss(self, batch_inputs, batch_data_samples):
        data_samples = copy.copy(batch_data_samples)
        return self._with_images(super().loss, batch_inputs, data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        return self._with_images(super().predict, batch_inputs, batch_data_samples, rescale)
