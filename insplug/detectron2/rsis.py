"""RSIS and RIS for detectron2: the ``InsplugRSIS`` and ``InsplugRIS`` meta-architectures
(META_ARCH_REGISTRY) and the ``build_insplug_rsis_resnet_backbone`` backbone builder.

Shapes: B images, (Hp, Wp) the padded batch input, (h_b, w_b) image b's un-padded input size,
(H_b, W_b) its output size (``height`` / ``width`` of the input dict).

Both wire the framework-free pipelines of :mod:`insplug.core.rsis.pipeline` /
:mod:`insplug.core.ris.pipeline`, like the mmdet adapters (``RSISSegmentor`` /
``RISSegmentor``), with the same module names under the meta-architecture (``skips``,
``decoder``; ``net``) so weights map by a prefix (``insplug.converters.rsis.to_detectron2``).

* RSIS trunk: detectron2's ``ResNet`` (``backbone.bottom_up``) with a fifth level ``stem``: the
  stem's ReLU output before max-pooling (stride 2), as the release's ``x1``.
* The RSIS schedule (curriculum, loss switches) is the meta-architecture's attributes
  ``train_steps_limit``, ``use_class_loss``, ``use_stop_loss`` (detectron2 has no hook for it
  here: set them from a training loop). Likewise RIS's curriculum is ``InsplugRIS``'s
  ``train_steps_limit`` (mmdet: ``RISCurriculumHook``).

yacs::

    MODEL.META_ARCHITECTURE: InsplugRSIS        MODEL.INSPLUG.RSIS.*
    MODEL.BACKBONE.NAME: build_insplug_rsis_resnet_backbone
    MODEL.META_ARCHITECTURE: InsplugRIS         MODEL.INSPLUG.RIS.*   (IN_FEATURE: e.g. res3)
"""
from typing import Sequence

import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.ris import RISRecurrentHead
from insplug.core.ris.pipeline import ris_gt_on_grid, ris_predict, ris_train_loss
from insplug.core.rsis import RSISDecoder, RSISSkips
from insplug.core.rsis.pipeline import rsis_gt_sequences, rsis_predict, rsis_train_losses
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['InsplugRSIS', 'InsplugRIS', 'InsplugRSISResNet', 'build_insplug_rsis_resnet_backbone']

RSIS_LEVELS = ('res5', 'res4', 'res3', 'res2', 'stem')


@register_config_node('RSIS')
def _rsis_node():
    dec = signature_defaults(RSISDecoder)
    loss = signature_defaults(rsis_train_losses)
    test = signature_defaults(rsis_predict)
    node = CN()
    node.NUM_CLASSES = 20
    node.IN_FEATURES = list(RSIS_LEVELS)
    node.HIDDEN_SIZE = dec['hidden_size']
    node.KERNEL_SIZE = dec['kernel_size']
    node.SKIP_MODE = dec['skip_mode']
    node.DROPOUT = dec['dropout']
    node.DROPOUT_CLS = dec['dropout_cls']
    node.DROPOUT_STOP = dec['dropout_stop']
    node.MAX_STEPS = 10           # release maxseqlen
    node.MAX_GT = loss['max_gt']
    node.IOU_WEIGHT = 1.0
    node.CLASS_WEIGHT = 0.1
    node.STOP_WEIGHT = 0.5
    node.STOP_BALANCE_WEIGHT = loss['stop_balance_weight']
    node.STOP_THR = test['stop_thr']
    node.MASK_THR = test['mask_thr']
    node.MIN_SIZE = test['min_size']
    node.MAX_PER_IMG = test['max_per_img']
    return node


@register_config_node('RIS')
def _ris_node():
    net = signature_defaults(RISRecurrentHead)
    loss = signature_defaults(ris_train_loss)
    test = signature_defaults(ris_predict)
    node = CN()
    node.NUM_CLASSES = net['num_classes']
    node.IN_FEATURE = 'res3'
    node.RNN_SIZE = net['rnn_size']
    node.RNN_LAYERS = net['rnn_layers']
    node.KERNEL_SIZE = net['kernel_size']
    node.FEAT_SIZE = [0, 0]       # required by CONFIDENCE 'flatten'
    node.CONFIDENCE = net['confidence']
    node.MASK_BIAS_INIT = net['mask_bias_init']
    node.SEQ_LENGTH = loss['seq_length']
    node.LAMBDA = loss['lam']
    node.CLASS_WEIGHT = loss['class_weight']
    node.MAX_STEPS = test['max_steps']
    node.STOP_THR = test['stop_thr']
    node.MASK_THR = test['mask_thr']
    node.MAX_PER_IMG = test['max_per_img']
    return node


class InsplugRSISResNet(Backbone):
    """detectron2 ``ResNet`` (``bottom_up``) whose outputs add ``stem``: the stem's ReLU output
    before max-pooling (stride 2)."""

    def __init__(self, bottom_up):
        super().__init__()
        self.bottom_up = bottom_up
        shapes = bottom_up.output_shape()
        self._shapes = {k: shapes[k] for k in ('res2', 'res3', 'res4', 'res5')}
        self._shapes['stem'] = ShapeSpec(channels=bottom_up.stem.out_channels, stride=2)

    def forward(self, x):
        stem = F.relu(self.bottom_up.stem.conv1(x))
        x = F.max_pool2d(stem, kernel_size=3, stride=2, padding=1)
        outs = {'stem': stem}
        for name, stage in zip(self.bottom_up.stage_names, self.bottom_up.stages):
            x = stage(x)
            outs[name] = x
        return outs

    def output_shape(self):
        return dict(self._shapes)

    @property
    def size_divisibility(self):
        return 32


@BACKBONE_REGISTRY.register()
def build_insplug_rsis_resnet_backbone(cfg, input_shape):
    """detectron2 ResNet (``MODEL.RESNETS.*``, out features res2..res5) + the ``stem`` level."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.OUT_FEATURES = ['res2', 'res3', 'res4', 'res5']
    return InsplugRSISResNet(build_resnet_backbone(cfg, input_shape))


class _Base(NormalisedInputs, nn.Module):
    """Normalisation, padding, ground truth and result packing shared by the two archs."""

    def _init_pixels(self, pixel_mean, pixel_std):
        self.register_pixel_stats(pixel_mean, pixel_std)

    @property
    def input_size_divisibility(self) -> int:
        return self.size_divisibility

    def gt_lists(self, batched_inputs):
        if any('instances' not in x for x in batched_inputs):
            raise KeyError(f'{type(self).__name__} training needs "instances" in every input '
                           'dict (use a dataset mapper with is_train=True)')
        inst = [x['instances'].to(self.device) for x in batched_inputs]
        return ([instances_mask_tensor(g, self.device) for g in inst],
                [g.gt_classes.long() for g in inst])

    @staticmethod
    def pack(results, batched_inputs, images):
        out = []
        for (masks, scores, labels), x, (h, w) in zip(results, batched_inputs,
                                                     images.image_sizes):
            inst = Instances((x.get('height', h), x.get('width', w)))
            inst.pred_masks = masks
            inst.scores = scores
            inst.pred_classes = labels
            inst.pred_boxes = Boxes(masks_to_boxes(masks).float())
            out.append({'instances': inst})
        return out

    @staticmethod
    def out_sizes(batched_inputs, images):
        return [(x.get('height', h), x.get('width', w))
                for x, (h, w) in zip(batched_inputs, images.image_sizes)]


@META_ARCH_REGISTRY.register()
class InsplugRSIS(_Base):
    """RSIS (Salvador et al., 2017) as a detectron2 meta-architecture.

    Args:
        backbone: outputs ``in_features`` (five levels, deepest first).
        skips, decoder: :class:`RSISSkips`, :class:`RSISDecoder` (K + 1 class outputs).
        max_steps, max_gt, weights, stop_balance_weight: as the mmdet ``RSISHead``.
        test_opts: ``stop_thr``, ``mask_thr``, ``min_size``, ``max_per_img``.
    """
    num_classes_key = 'MODEL.INSPLUG.RSIS.NUM_CLASSES'

    @configurable
    def __init__(self, *, backbone: Backbone, skips: RSISSkips, decoder: RSISDecoder,
                 in_features: Sequence[str], num_classes: int, pixel_mean, pixel_std,
                 max_steps: int = 10, max_gt: int = 20, weights: dict = None,
                 stop_balance_weight: float = 0.5, test_opts: dict = None):
        super().__init__()
        self.backbone, self.skips, self.decoder = backbone, skips, decoder
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.max_steps, self.max_gt = max_steps, max_gt
        self.weights = dict(weights or dict(mask=1.0, cls=0.1, stop=0.5))
        self.stop_balance_weight = stop_balance_weight
        self.test_opts = dict(test_opts or {})
        self.train_steps_limit = None
        self.use_class_loss = True
        self.use_stop_loss = True
        self.size_divisibility = backbone.size_divisibility
        self._init_pixels(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        p = cfg.MODEL.INSPLUG.RSIS
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in p.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.RSIS.IN_FEATURES {list(p.IN_FEATURES)}: {missing} '
                             f'are not backbone outputs {sorted(shapes)}')
        return dict(
            backbone=backbone,
            skips=RSISSkips([shapes[f].channels for f in p.IN_FEATURES], p.HIDDEN_SIZE,
                            p.KERNEL_SIZE),
            decoder=RSISDecoder(p.HIDDEN_SIZE, p.NUM_CLASSES + 1, p.KERNEL_SIZE, p.SKIP_MODE,
                                p.DROPOUT, p.DROPOUT_CLS, p.DROPOUT_STOP),
            in_features=list(p.IN_FEATURES), num_classes=p.NUM_CLASSES,
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
            max_steps=p.MAX_STEPS, max_gt=p.MAX_GT,
            weights=dict(mask=p.IOU_WEIGHT, cls=p.CLASS_WEIGHT, stop=p.STOP_WEIGHT),
            stop_balance_weight=p.STOP_BALANCE_WEIGHT,
            test_opts=dict(stop_thr=p.STOP_THR, mask_thr=p.MASK_THR, min_size=p.MIN_SIZE,
                           max_per_img=p.MAX_PER_IMG))

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        feats = self.backbone(images.tensor)
        skips = self.skips([feats[f] for f in self.in_features])
        size = tuple(images.tensor.shape[-2:])
        if self.training:
            masks, labels = rsis_gt_sequences(*self.gt_lists(batched_inputs), size, self.max_gt)
            return rsis_train_losses(self.decoder, skips, masks, labels, self.max_steps,
                                     self.train_steps_limit, self.max_gt, self.weights,
                                     self.stop_balance_weight, self.use_class_loss,
                                     self.use_stop_loss)
        results = rsis_predict(self.decoder, skips, size, images.image_sizes,
                               self.out_sizes(batched_inputs, images), self.max_steps,
                               **self.test_opts)
        return self.pack(results, batched_inputs, images)


@META_ARCH_REGISTRY.register()
class InsplugRIS(_Base):
    """RIS (Romera-Paredes & Torr, ECCV 2016) as a detectron2 meta-architecture.

    Args:
        backbone: outputs ``in_feature``. net: :class:`RISRecurrentHead`.
        seq_length, lam, class_weight: training (release 40, 1). test_opts: ``max_steps``,
            ``stop_thr``, ``mask_thr``, ``max_per_img``.
    """
    num_classes_key = 'MODEL.INSPLUG.RIS.NUM_CLASSES'

    @configurable
    def __init__(self, *, backbone: Backbone, net: RISRecurrentHead, in_feature: str,
                 pixel_mean, pixel_std, seq_length: int = 40, lam: float = 1.0,
                 class_weight: float = 1.0, test_opts: dict = None):
        super().__init__()
        self.backbone, self.net, self.in_feature = backbone, net, in_feature
        self.num_classes = net.num_classes
        self.seq_length, self.lam, self.class_weight = seq_length, lam, class_weight
        self.train_steps_limit = None  # the curriculum's limit on seq_length (None: none)
        self.test_opts = dict(test_opts or {})
        self.size_divisibility = backbone.size_divisibility
        self._init_pixels(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        p = cfg.MODEL.INSPLUG.RIS
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        if p.IN_FEATURE not in shapes:
            raise ValueError(f'MODEL.INSPLUG.RIS.IN_FEATURE {p.IN_FEATURE!r} is not a backbone '
                             f'output {sorted(shapes)}')
        feat_size = tuple(p.FEAT_SIZE) if p.CONFIDENCE == 'flatten' else None
        net = RISRecurrentHead(shapes[p.IN_FEATURE].channels, p.RNN_SIZE, p.RNN_LAYERS,
                               p.KERNEL_SIZE, feat_size, p.CONFIDENCE, p.NUM_CLASSES, True,
                               p.MASK_BIAS_INIT)
        return dict(backbone=backbone, net=net, in_feature=p.IN_FEATURE,
                    pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
                    seq_length=p.SEQ_LENGTH, lam=p.LAMBDA, class_weight=p.CLASS_WEIGHT,
                    test_opts=dict(max_steps=p.MAX_STEPS, stop_thr=p.STOP_THR,
                                   mask_thr=p.MASK_THR, max_per_img=p.MAX_PER_IMG))

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        x = self.backbone(images.tensor)[self.in_feature]
        size = tuple(images.tensor.shape[-2:])
        if self.training:
            masks, labels = ris_gt_on_grid(*self.gt_lists(batched_inputs), size, x.shape[-2:])
            seq_length = self.seq_length if self.train_steps_limit is None \
                else min(self.seq_length, self.train_steps_limit)
            return dict(loss_ris=ris_train_loss(self.net, x, masks, labels, seq_length,
                                                self.lam, self.class_weight))
        results = ris_predict(self.net, x, size, images.image_sizes,
                              self.out_sizes(batched_inputs, images), **self.test_opts)
        return self.pack(results, batched_inputs, images)
