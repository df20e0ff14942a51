"""Detectron2 adapters of the semantic-segmentation components (``MODEL.INSPLUG.SEMSEG``).

Backbones (BACKBONE_REGISTRY), each returning its ``OUT_INDICES`` levels named ``l<i>``:

* ``build_insplug_drn_backbone`` (``SEMSEG.DRN.ARCH``: drn_c_26 ... drn_d_107),
* ``build_insplug_enet_backbone``, ``build_insplug_espnet_backbone`` (``SEMSEG.ESPNET.P/Q``),
* ``build_insplug_fc_densenet_backbone`` (``SEMSEG.FC_DENSENET.ARCH``),
* ``build_insplug_linknet_backbone`` (``SEMSEG.LINKNET.WIDTHS/BLOCKS``).

Necks, as ``Backbone`` wrappers like :class:`~insplug.detectron2.PyramidPoolingBackbone` (so
they sit under FPN, SparseInst, RefineMask, ... wherever a backbone goes):

* :class:`ContextBackbone` / ``build_insplug_context_backbone``: a single-map module
  (``SEMSEG.CONTEXT.NAME``: ASPP, DenseASPP, DUC, BaseOC, PSA) on ``IN_FEATURES`` of the
  backbone named ``SEMSEG.BACKBONE_NAME``;
* :class:`FusionBackbone` / ``build_insplug_fusion_backbone``: a multi-level fusion
  (``SEMSEG.FUSION.NAME``: UPerNet, LWRefineNet, FCN8s) of ``IN_FEATURES`` added as the output
  ``SEMSEG.FUSION.OUT_FEATURE``.

All maths is in :mod:`insplug.core.layers` / :mod:`insplug.core.backbones`.
"""
from typing import Callable, Dict, Sequence

from detectron2.config import CfgNode as CN
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from insplug.core.backbones.drn import DRN
from insplug.core.backbones.enet import ENet
from insplug.core.backbones.espnet import ESPNetEncoder
from insplug.core.backbones.fc_densenet import FCDenseNet
from insplug.core.backbones.linknet import LinkNet
from insplug.core.layers.aspp import ASPP
from insplug.core.layers.crp import LightWeightRefineNetDecoder
from insplug.core.layers.dense_aspp import DenseASPP
from insplug.core.layers.duc import DUC
from insplug.core.layers.fcn8s_head import FCN8sHead
from insplug.core.layers.object_context import BaseOC
from insplug.core.layers.psa import PSA
from insplug.core.layers.upernet import UPerNetFusion

from .config import register_config_node


@register_config_node('SEMSEG')
def _semseg_node():
    node = CN()
    node.OUT_INDICES = []  # [] = the backbone's default levels
    node.DRN = CN({'ARCH': 'drn_d_54'})
    node.ESPNET = CN({'P': 2, 'Q': 8})
    node.FC_DENSENET = CN({'ARCH': 'fc_densenet103'})
    node.LINKNET = CN({'WIDTHS': [64, 128, 256, 512], 'BLOCKS': [2, 2, 2, 2]})
    # the registered backbone that the context / fusion wrappers wrap
    node.BACKBONE_NAME = 'build_resnet_backbone'
    node.CONTEXT = CN()
    node.CONTEXT.NAME = 'ASPP'  # ASPP | DenseASPP | DUC | BaseOC | PSA
    node.CONTEXT.IN_FEATURES = ['res5']
    node.CONTEXT.CHANNELS = 256  # ASPP / DUC output, DenseASPP growth, PSA reduction width
    node.CONTEXT.DILATIONS = [6, 12, 18]  # ASPP (output stride 16); DenseASPP: [3, 6, 12, 18, 24]
    node.CONTEXT.NORM = 'BN'  # ASPP / DUC norm ('' = none)
    node.FUSION = CN()
    node.FUSION.NAME = 'UPerNet'  # UPerNet | LWRefineNet | FCN8s
    node.FUSION.IN_FEATURES = ['res2', 'res3', 'res4', 'res5']  # finest first (FCN8s: three)
    node.FUSION.CHANNELS = 256
    node.FUSION.OUT_FEATURE = 'fused'
    return node


class CoreBackbone(Backbone):
    """A core backbone (tuple of levels with ``out_channels`` / ``strides``) as a detectron2
    ``Backbone``: outputs ``l<i>`` for each index i of its ``out_indices``."""

    def __init__(self, body: nn.Module, size_divisibility: int = 0):
        super().__init__()
        self.body = body
        self._out_features = [f'l{i}' for i in body.out_indices]
        self._out_feature_channels = dict(zip(self._out_features, body.out_channels))
        self._out_feature_strides = dict(zip(self._out_features, body.strides))
        self._size_divisibility = size_divisibility

    @property
    def size_divisibility(self):
        return self._size_divisibility

    def forward(self, x):
        return dict(zip(self._out_features, self.body(x)))


def _indices(cfg, default):
    return list(cfg.MODEL.INSPLUG.SEMSEG.OUT_INDICES) or list(default)


@BACKBONE_REGISTRY.register()
def build_insplug_drn_backbone(cfg, input_shape: ShapeSpec):
    s = cfg.MODEL.INSPLUG.SEMSEG
    return CoreBackbone(DRN(s.DRN.ARCH, _indices(cfg, (1, 2, 3, 7)),
                            in_channels=input_shape.channels))


@BACKBONE_REGISTRY.register()
def build_insplug_enet_backbone(cfg, input_shape: ShapeSpec):
    return CoreBackbone(ENet(_indices(cfg, (5,)), in_channels=input_shape.channels), 8)


@BACKBONE_REGISTRY.register()
def build_insplug_espnet_backbone(cfg, input_shape: ShapeSpec):
    s = cfg.MODEL.INSPLUG.SEMSEG.ESPNET
    return CoreBackbone(ESPNetEncoder(s.P, s.Q, _indices(cfg, (0, 1, 2))))


@BACKBONE_REGISTRY.register()
def build_insplug_fc_densenet_backbone(cfg, input_shape: ShapeSpec):
    s = cfg.MODEL.INSPLUG.SEMSEG.FC_DENSENET
    return CoreBackbone(FCDenseNet(s.ARCH, _indices(cfg, (-1,)),
                                   in_channels=input_shape.channels))


@BACKBONE_REGISTRY.register()
def build_insplug_linknet_backbone(cfg, input_shape: ShapeSpec):
    s = cfg.MODEL.INSPLUG.SEMSEG.LINKNET
    return CoreBackbone(LinkNet(_indices(cfg, (0,)), s.WIDTHS, s.BLOCKS,
                                in_channels=input_shape.channels))


class _Wrapper(Backbone):
    def __init__(self, bottom_up: Backbone, in_features: Sequence[str]):
        super().__init__()
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(f'{type(self).__name__}: in_features {list(in_features)} must be '
                             f'outputs of the wrapped backbone, which has {sorted(shapes)}')
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self._out_features = list(shapes)
        self._out_feature_strides = {k: s.stride for k, s in shapes.items()}
        self._out_feature_channels = {k: s.channels for k, s in shapes.items()}

    @property
    def size_divisibility(self):
        return self.bottom_up.size_divisibility

    @property
    def padding_constraints(self):
        return self.bottom_up.padding_constraints


class ContextBackbone(_Wrapper):
    """The wrapped backbone's ``in_features`` outputs go through ``make_context(channels)``
    (a core module (B, C, H, W) -> (B, C', H', W') with ``out_channels``); others pass."""

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str],
                 make_context: Callable[[int], nn.Module], upscale: int = 1):
        super().__init__(bottom_up, in_features)
        shapes = bottom_up.output_shape()
        self.contexts = nn.ModuleDict({f: make_context(shapes[f].channels)
                                       for f in self.in_features})
        for f, m in self.contexts.items():
            self._out_feature_channels[f] = m.out_channels
            self._out_feature_strides[f] = shapes[f].stride // upscale

    def forward(self, x):
        features = dict(self.bottom_up(x))
        for f, m in self.contexts.items():
            features[f] = m(features[f])
        return features


class FusionBackbone(_Wrapper):
    """Adds ``out_feature`` = ``fusion([features[f] for f in in_features])`` (a core
    multi-level module, finest first, output at the finest level's stride)."""

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str], fusion: nn.Module,
                 out_feature: str = 'fused'):
        super().__init__(bottom_up, in_features)
        self.fusion = fusion
        self.out_feature = out_feature
        shapes = bottom_up.output_shape()
        self._out_features.append(out_feature)
        self._out_feature_channels[out_feature] = fusion.out_channels
        self._out_feature_strides[out_feature] = shapes[self.in_features[0]].stride

    def forward(self, x):
        features = dict(self.bottom_up(x))
        features[self.out_feature] = self.fusion([features[f] for f in self.in_features])
        return features


def _norm(name):
    return (lambda c: get_norm(name, c)) if name else None


CONTEXTS: Dict[str, Callable] = {
    'ASPP': lambda c, s: ASPP(c, s.CHANNELS, s.DILATIONS, norm_layer=_norm(s.NORM)),
    'DenseASPP': lambda c, s: DenseASPP(c, 2 * s.CHANNELS, s.CHANNELS, s.DILATIONS),
    'DUC': lambda c, s: DUC(c, s.CHANNELS, 2, norm_layer=_norm(s.NORM)),
    'BaseOC': lambda c, s: BaseOC(c),
    'PSA': lambda c, s: PSA(c, s.CHANNELS),
}


def _inner(cfg, input_shape, own_name):
    name = cfg.MODEL.INSPLUG.SEMSEG.BACKBONE_NAME
    if name == own_name:
        raise ValueError(f'MODEL.INSPLUG.SEMSEG.BACKBONE_NAME must name the wrapped backbone, '
                         f'not {own_name} itself')
    return BACKBONE_REGISTRY.get(name)(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_insplug_context_backbone(cfg, input_shape: ShapeSpec):
    """``SEMSEG.BACKBONE_NAME``, then ``SEMSEG.CONTEXT.NAME`` on ``SEMSEG.CONTEXT.IN_FEATURES``."""
    s = cfg.MODEL.INSPLUG.SEMSEG.CONTEXT
    if s.NAME not in CONTEXTS:
        raise ValueError(f'MODEL.INSPLUG.SEMSEG.CONTEXT.NAME {s.NAME!r} is not one of '
                         f'{sorted(CONTEXTS)}')
    return ContextBackbone(_inner(cfg, input_shape, 'build_insplug_context_backbone'),
                           list(s.IN_FEATURES), lambda c: CONTEXTS[s.NAME](c, s),
                           upscale=2 if s.NAME == 'DUC' else 1)


@BACKBONE_REGISTRY.register()
def build_insplug_fusion_backbone(cfg, input_shape: ShapeSpec):
    """``SEMSEG.BACKBONE_NAME``, plus ``SEMSEG.FUSION.NAME`` of ``SEMSEG.FUSION.IN_FEATURES``."""
    s = cfg.MODEL.INSPLUG.SEMSEG.FUSION
    inner = _inner(cfg, input_shape, 'build_insplug_fusion_backbone')
    shapes = inner.output_shape()
    channels = [shapes[f].channels for f in s.IN_FEATURES if f in shapes]
    if len(channels) != len(s.IN_FEATURES):
        raise ValueError(f'MODEL.INSPLUG.SEMSEG.FUSION.IN_FEATURES {list(s.IN_FEATURES)} must '
                         f'be outputs of {cfg.MODEL.INSPLUG.SEMSEG.BACKBONE_NAME}: '
                         f'{sorted(shapes)}')
    if s.NAME == 'UPerNet':
        fusion = UPerNetFusion(channels, s.CHANNELS)
    elif s.NAME == 'LWRefineNet':
        fusion = LightWeightRefineNetDecoder(channels, s.CHANNELS)
    elif s.NAME == 'FCN8s':
        fusion = FCN8sHead(channels, s.CHANNELS, upsample_final=False)
    else:
        raise ValueError(f'MODEL.INSPLUG.SEMSEG.FUSION.NAME {s.NAME!r} is not one of '
                         "'UPerNet', 'LWRefineNet', 'FCN8s'")
    return FusionBackbone(inner, list(s.IN_FEATURES), fusion, s.OUT_FEATURE)
