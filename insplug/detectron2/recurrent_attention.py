"""Recurrent attention (Ren & Zemel, CVPR 2017) for detectron2: ``InsplugRecurrentAttention``
(META_ARCH_REGISTRY).

Shapes: B images, (h_i, w_i) image i's input size, (H, W) the network's fixed input, T steps,
(Ho, Wo) the requested output size.

The network is self-contained (its own controller and patch CNNs, no detectron2 backbone):
images are normalised, each resized to the fixed input
(:func:`insplug.core.recurrent_attention.resize_to_input`), and the core does the rest:
:func:`insplug.core.recurrent_attention.training.training_losses` in training (the iteration
for the GT-feeding schedule comes from detectron2's ``EventStorage``),
:func:`insplug.core.recurrent_attention.instances_from_steps` at inference. Parameters live
under ``net.*`` as in the mmdet adapter (``RecurrentAttentionSegmentor``), so one state_dict
loads into both.

yacs::

    MODEL.META_ARCHITECTURE: InsplugRecurrentAttention
    MODEL.INSPLUG.RECURRENTATTENTION.*   (NET.* = RecurrentAttentionNet arguments, KNOB.*,
                                          LOSS_WEIGHTS.*, TEST.*, NUM_CLASSES)

The release is TensorFlow (no detectron2 names); the ``Insplug`` prefix keeps the name clear.
"""
from typing import Dict, Optional, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.recurrent_attention import (RecurrentAttentionNet, instances_from_steps,
                                              masks_to_input, resize_to_input)
from insplug.core.recurrent_attention.training import DEFAULT_KNOB, training_losses
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['InsplugRecurrentAttention']

_TEST_DEFAULTS = dict(score_thr=0.5, mask_threshold=0.3, stop_rule='threshold',
                      one_label=True)
_LOSS_DEFAULTS = dict(box=1.0, segm=1.0, score=1.0, cls=1.0)


def _upper(defaults: dict) -> CN:
    node = CN()
    for key, value in defaults.items():
        node[key.upper()] = list(value) if isinstance(value, tuple) else value
    return node


def _lower(node) -> dict:
    return {k.lower(): (tuple(v) if isinstance(v, list) else v) for k, v in node.items()}


@register_config_node('RECURRENTATTENTION')
def _recurrent_attention_node():
    node = CN()
    node.NUM_CLASSES = 1  # the release has no class output (one foreground class)
    net = {k: v for k, v in signature_defaults(RecurrentAttentionNet).items()
           if k not in ('num_classes', 'attn_cnn_skip')}
    node.NET = _upper(net)
    node.NET.ATTN_CNN_SKIP = []  # [] = every patch-CNN layer (with ADD_SKIP_CONN)
    node.KNOB = _upper(DEFAULT_KNOB)
    node.LOSS_WEIGHTS = _upper(_LOSS_DEFAULTS)
    node.TEST = _upper(_TEST_DEFAULTS)
    return node


def _current_iter() -> int:
    try:
        return int(get_event_storage().iter)
    except (AssertionError, AttributeError):  # no EventStorage: not under a trainer
        return 0


@META_ARCH_REGISTRY.register()
class InsplugRecurrentAttention(NormalisedInputs, nn.Module):
    """End-to-end recurrent attention instance segmentation as a detectron2 meta-architecture.

    Args:
        net: :class:`RecurrentAttentionNet` keyword arguments.
        num_classes: K (1: the release).
        knob: GT-feeding schedule (see ``training.sample_knobs``).
        loss_weights: ``box``, ``segm``, ``score``, ``cls``.
        test: ``score_thr``, ``mask_threshold``, ``stop_rule``, ``one_label``.
        pixel_mean, pixel_std: input normalisation.
    """
    num_classes_key = 'MODEL.INSPLUG.RECURRENTATTENTION.NUM_CLASSES'

    @configurable
    def __init__(self, *, net: dict, num_classes: int, pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], knob: Optional[dict] = None,
                 loss_weights: Optional[dict] = None, test: Optional[dict] = None):
        super().__init__()
        self.num_classes = num_classes
        self.net = RecurrentAttentionNet(num_classes=num_classes, **net)
        self.knob = dict(knob or {})
        self.loss_weights = dict(loss_weights or {})
        self.test_cfg = dict(_TEST_DEFAULTS, **(test or {}))
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        node = cfg.MODEL.INSPLUG.RECURRENTATTENTION
        net = _lower(node.NET)
        if not net.get('attn_cnn_skip'):
            net['attn_cnn_skip'] = None
        return dict(net=net, num_classes=node.NUM_CLASSES,
                    pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
                    knob=_lower(node.KNOB), loss_weights=_lower(node.LOSS_WEIGHTS),
                    test=_lower(node.TEST))

    @property
    def input_size_divisibility(self) -> int:
        return 1  # the network resizes every image to its fixed input size

    @property
    def input_size(self):
        return (self.net.height, self.net.width)

    def preprocess_image(self, batched_inputs):
        """(normalised padded ImageList, (B, 3, H, W) at the network input)."""
        images = NormalisedInputs.preprocess_image(self, batched_inputs)  # no padding (1)
        return images, resize_to_input(images.tensor, images.image_sizes, self.input_size)

    def losses(self, batched_inputs, net_inputs) -> Dict[str, torch.Tensor]:
        masks, labels = [], []
        for x in batched_inputs:
            if 'instances' not in x:
                raise KeyError('training needs "instances" in every input dict (use a dataset '
                               'mapper with is_train=True)')
            inst = x['instances']
            m = instances_mask_tensor(inst, self.device)
            masks.append(masks_to_input(m, m.shape[-2:], self.input_size))
            labels.append(inst.gt_classes.to(self.device).long())
        return training_losses(self.net, net_inputs, masks, labels, _current_iter(), self.knob,
                               None, self.loss_weights)

    def inference(self, outputs, batched_inputs, images: ImageList):
        processed = []
        for b, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            out_hw = (x.get('height', size[0]), x.get('width', size[1]))
            cls = outputs['cls_logits'][b] if outputs['cls_logits'] is not None else None
            masks, scores, labels = instances_from_steps(
                outputs['masks'][b], outputs['scores'][b], cls, out_hw,
                self.test_cfg['score_thr'], self.test_cfg['mask_threshold'],
                self.test_cfg['stop_rule'], self.test_cfg['one_label'])
            inst = Instances(tuple(out_hw))
            inst.pred_masks = masks
            inst.pred_boxes = Boxes(masks_to_boxes(masks))
            inst.scores = scores
            inst.pred_classes = labels
            processed.append({'instances': inst})
        return processed

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images, net_inputs = self.preprocess_image(batched_inputs)
        if self.training:
            return self.losses(batched_inputs, net_inputs)
        return self.inference(self.net(net_inputs), batched_inputs, images)
