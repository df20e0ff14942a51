"""VoVNetV2 (CenterMask) as detectron2 backbones (BACKBONE_REGISTRY).

Shapes: B images, (H, W) the padded input; ``stage{n}`` has stride ``2 ** n`` (stage2: 4 ...
stage5: 32) and the channels of the architecture's ``out_ch``.

* :class:`InsplugVoVNet`: a detectron2 ``Backbone`` around
  :class:`insplug.core.backbones.vovnet.VoVNetV2` (the one implementation; the mmdet adapter
  wraps it too), outputs named ``stage2`` ... ``stage5`` as centermask2's ``VoVNet``;
* ``build_insplug_vovnet_backbone`` (centermask2 / AdelaiDet: ``build_vovnet_backbone``);
* ``build_insplug_vovnet_fpn_backbone``: + detectron2 ``FPN`` with ``LastLevelMaxPool``
  (centermask2 / AdelaiDet: ``build_vovnet_fpn_backbone``);
* ``build_insplug_fcos_vovnet_fpn_backbone``: + ``FPN`` with P6/P7 computed from P5
  (``MODEL.INSPLUG.FCOS.TOP_LEVELS``: 2 -> P6, P7; 1 -> P6; 0 -> none), as centermask2's
  ``build_fcos_vovnet_fpn_backbone`` (which reads ``MODEL.FCOS.TOP_LEVELS``).

yacs (centermask2's ``MODEL.VOVNET`` keys, under ``MODEL.INSPLUG.VOVNET``)::

    CONV_BODY: V-39-eSE     # V-19-slim-eSE, V-19-eSE, V-39-eSE, V-57-eSE, V-99-eSE
    OUT_FEATURES: [stage2, stage3, stage4, stage5]
    NORM: FrozenBN          # any detectron2 norm name (BN, SyncBN, GN, FrozenBN)

``MODEL.BACKBONE.FREEZE_AT`` freezes the stem (1) and stages 2 .. FREEZE_AT (centermask2's
index: 0 = nothing). The depthwise (``-dw``) and deformable variants of centermask2 are not
built. The released checkpoints' trunk keys (``backbone.bottom_up.stage2.OSA2_1...``) are mapped
by ``insplug.converters.centermask`` / ``vovnet_imagenet`` (``to_detectron2``).
"""
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from insplug.core.backbones.vovnet import ARCH_SPECS, VoVNetV2

from .config import register_config_node, signature_defaults

__all__ = ['InsplugVoVNet', 'build_insplug_vovnet_backbone', 'build_insplug_vovnet_fpn_backbone',
           'build_insplug_fcos_vovnet_fpn_backbone', 'arch_of_conv_body', 'fcos_top_block']

STAGE_NAMES = ('stage2', 'stage3', 'stage4', 'stage5')


@register_config_node('VOVNET')
def _vovnet_node():
    from detectron2.config import CfgNode as CN
    node = CN()
    node.CONV_BODY = f"{signature_defaults(VoVNetV2)['arch']}-eSE"
    node.OUT_FEATURES = list(STAGE_NAMES)
    node.NORM = 'FrozenBN'
    return node


def arch_of_conv_body(name: str) -> str:
    """centermask2's ``CONV_BODY`` ('V-39-eSE', 'V-19-slim-eSE', ...) -> the core's arch name
    ('V-39', 'V-19-slim'); the core's names are accepted as they are."""
    arch = name[:-len('-eSE')] if name.endswith('-eSE') else name
    if arch not in ARCH_SPECS:
        raise ValueError(f'MODEL.INSPLUG.VOVNET.CONV_BODY {name!r}: insplug builds '
                         f'{[a + "-eSE" for a in ARCH_SPECS]} (the depthwise "-dw" variants '
                         'are not implemented)')
    return arch


class InsplugVoVNet(Backbone):
    """VoVNetV2 trunk with detectron2's output naming.

    Args:
        arch: core architecture ('V-39', ...) or a spec dict (see ``VoVNetV2``).
        out_features: subset of ``stage2`` ... ``stage5``.
        norm: detectron2 norm name or ``channels -> nn.Module``.
        freeze_at: 0 none, 1 the stem, k the stem and stages 2 .. k.
        in_channels: image channels.
    """

    def __init__(self, arch='V-39', out_features=STAGE_NAMES, norm='FrozenBN', freeze_at=0,
                 in_channels=3):
        super().__init__()
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if unknown:
            raise ValueError(f'InsplugVoVNet: out_features {unknown} are not among '
                             f'{list(STAGE_NAMES)}')
        norm_layer = norm if callable(norm) else (lambda c: get_norm(norm, c))
        self.body = VoVNetV2(arch, out_indices=tuple(range(4)), in_channels=in_channels,
                             norm_layer=norm_layer)
        self._out_features = list(out_features)
        self._out_feature_channels = dict(zip(STAGE_NAMES, self.body.out_channels))
        self._out_feature_strides = {name: 2 ** (i + 2) for i, name in enumerate(STAGE_NAMES)}
        self.freeze(freeze_at)

    def freeze(self, freeze_at=0):
        """Freeze the stem (``freeze_at >= 1``) and stages 2 .. ``freeze_at``: no gradient and
        their BatchNorms frozen (detectron2's ResNet convention)."""
        modules = ([self.body.stem] + list(self.body.stages[:freeze_at - 1])) \
            if freeze_at >= 1 else []
        for m in modules:
            for p in m.parameters():
                p.requires_grad = False
            FrozenBatchNorm2d.convert_frozen_batchnorm(m)
        return self

    def forward(self, x):
        """(B, 3, H, W) -> ``{stage_n: (B, C_n, H / 2^n, W / 2^n)}`` for the out_features."""
        return {name: y for name, y in zip(STAGE_NAMES, self.body(x))
                if name in self._out_features}

    def output_shape(self):
        return {name: ShapeSpec(channels=self._out_feature_channels[name],
                                stride=self._out_feature_strides[name])
                for name in self._out_features}


def fcos_top_block(top_levels: int, channels: int, in_feature='p5'):
    """P6/P7 (``top_levels`` 2), P6 (1) or no extra level (0), computed from P5 with 3x3/2
    convs and a ReLU between P6 and P7 (FCOS / centermask2 / AdelaiDet)."""
    from .fcos import LastLevelP6
    if top_levels == 2:
        return LastLevelP6P7(channels, channels, in_feature)
    if top_levels == 1:
        return LastLevelP6(channels, channels, in_feature)
    if top_levels == 0:
        return None
    raise ValueError(f'MODEL.INSPLUG.FCOS.TOP_LEVELS must be 0, 1 or 2, got {top_levels}')


@BACKBONE_REGISTRY.register()
def build_insplug_vovnet_backbone(cfg, input_shape: ShapeSpec):
    """``InsplugVoVNet`` from ``MODEL.INSPLUG.VOVNET`` (centermask2: build_vovnet_backbone)."""
    v = cfg.MODEL.INSPLUG.VOVNET
    return InsplugVoVNet(arch_of_conv_body(v.CONV_BODY), list(v.OUT_FEATURES), v.NORM,
                         cfg.MODEL.BACKBONE.FREEZE_AT, input_shape.channels)


@BACKBONE_REGISTRY.register()
def build_insplug_vovnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VoVNet + FPN on ``MODEL.FPN.IN_FEATURES`` with a max-pooled P6 (Mask R-CNN style)."""
    return FPN(bottom_up=build_insplug_vovnet_backbone(cfg, input_shape),
               in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(),
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_insplug_fcos_vovnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VoVNet + FPN with P6/P7 from P5 (``MODEL.INSPLUG.FCOS.TOP_LEVELS``), as centermask2's
    ``build_fcos_vovnet_fpn_backbone``."""
    out = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(bottom_up=build_insplug_vovnet_backbone(cfg, input_shape),
               in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=out,
               norm=cfg.MODEL.FPN.NORM,
               top_block=fcos_top_block(cfg.MODEL.INSPLUG.FCOS.TOP_LEVELS, out),
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)

