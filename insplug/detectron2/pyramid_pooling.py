"""Pyramid pooling (PSPNet) as a detectron2 backbone wrapper / neck.

:class:`PyramidPoolingBackbone` wraps any detectron2 ``Backbone`` and applies
:class:`insplug.core.layers.pyramid_pooling.PyramidPooling` to chosen outputs; the others pass
through. Since it is itself a ``Backbone``, it can sit

* on top of a backbone (``BACKBONE.NAME: build_ppm_backbone`` with
  ``MODEL.INSPLUG.PPM.BACKBONE_NAME`` naming the wrapped one, e.g. ``build_resnet_fpn_backbone``
  with ``IN_FEATURES: [p5]``), or
* between a backbone and FPN (a neck; ``BACKBONE.NAME: build_resnet_ppm_fpn_backbone``, or in a
  LazyConfig ``FPN(bottom_up=L(PyramidPoolingBackbone)(bottom_up=..., in_features=['res5']))``).
"""
from typing import Optional, Sequence

from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from insplug.core.layers.pyramid_pooling import PyramidPooling


class PyramidPoolingBackbone(Backbone):
    """A ``Backbone`` whose ``in_features`` outputs are pyramid-pooled.

    Args:
        bottom_up: the wrapped detectron2 ``Backbone``.
        in_features: names of the outputs to transform (e.g. ``['res5']`` or ``['p5']``).
        channels: channels of each pooled branch (None: input channels // 4).
        out_channels: channels of a transformed output (None: unchanged).
        pool_sizes: grid sizes (1, 2, 3, 6).
        norm: detectron2 norm name ('' for biased convolutions without norm) or a callable.
        bottleneck_kernel: kernel of the fusing convolution (1 in SparseInst, 3 in PSPNet).
    """

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str] = ('res5',),
                 channels: Optional[int] = None, out_channels: Optional[int] = None,
                 pool_sizes: Sequence[int] = (1, 2, 3, 6), norm='',
                 bottleneck_kernel: int = 1):
        super().__init__()
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(f'PyramidPoolingBackbone: in_features {list(in_features)} must be '
                             f'outputs of the wrapped backbone, which has {sorted(shapes)}')
        self.bottom_up = bottom_up
        self.in_features = list(in_features)

        def norm_layer(num_channels):
            return get_norm(norm, num_channels)

        self.ppms = nn.ModuleDict({
            name: PyramidPooling(shapes[name].channels, channels, out_channels, pool_sizes,
                                 norm_layer if norm else None, bottleneck_kernel)
            for name in self.in_features})
        self._out_features = list(shapes)
        self._out_feature_strides = {k: s.stride for k, s in shapes.items()}
        self._out_feature_channels = {k: s.channels for k, s in shapes.items()}
        for name, ppm in self.ppms.items():
            self._out_feature_channels[name] = ppm.out_channels

    @property
    def size_divisibility(self):
        return self.bottom_up.size_divisibility

    @property
    def padding_constraints(self):
        return self.bottom_up.padding_constraints

    def forward(self, x):
        """(B, 3, H, W) -> dict of the wrapped backbone's maps, the chosen ones pooled."""
        features = dict(self.bottom_up(x))
        for name, ppm in self.ppms.items():
            features[name] = ppm(features[name])
        return features


def _ppm_args(cfg):
    ppm = cfg.MODEL.INSPLUG.PPM
    return dict(in_features=list(ppm.IN_FEATURES), channels=ppm.CHANNELS or None,
                out_channels=ppm.OUT_CHANNELS or None, pool_sizes=list(ppm.POOL_SIZES),
                norm=ppm.NORM, bottleneck_kernel=ppm.BOTTLENECK_KERNEL)


@BACKBONE_REGISTRY.register()
def build_ppm_backbone(cfg, input_shape: ShapeSpec):
    """``MODEL.INSPLUG.PPM.BACKBONE_NAME`` (any registered backbone), then pyramid pooling on
    ``MODEL.INSPLUG.PPM.IN_FEATURES``."""
    name = cfg.MODEL.INSPLUG.PPM.BACKBONE_NAME
    if name == 'build_ppm_backbone':
        raise ValueError('MODEL.INSPLUG.PPM.BACKBONE_NAME must name the wrapped backbone, not '
                         'build_ppm_backbone itself')
    inner = BACKBONE_REGISTRY.get(name)(cfg, input_shape)
    return PyramidPoolingBackbone(inner, **_ppm_args(cfg))


@BACKBONE_REGISTRY.register()
def build_resnet_ppm_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet -> pyramid pooling on ``MODEL.INSPLUG.PPM.IN_FEATURES`` (e.g. res5) -> FPN."""
    bottom_up = PyramidPoolingBackbone(build_resnet_backbone(cfg, input_shape),
                                       **_ppm_args(cfg))
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
