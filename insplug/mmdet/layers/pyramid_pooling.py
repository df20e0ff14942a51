"""``PyramidPoolingNeck``: PSPNet pyramid pooling on chosen levels of a multi-level feature tuple.

Usable after any backbone or neck, e.g. in a Mask R-CNN config::

    neck=[dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
          dict(type='PyramidPoolingNeck', in_channels=256, levels=(-2,))]  # P5

(a list of necks is built as ``nn.Sequential``; P6 of this FPN is max-pooled from P5 inside the
FPN, so level -2 is the last one the RoI heads read), or before the FPN on the backbone's last
stage with ``in_channels=[256, 512, 1024, 2048]``. From a stock mmdet config
(``default_scope='mmdet'``) name it ``insplug.PyramidPoolingNeck``. The maths is in
:mod:`insplug.core.layers.pyramid_pooling`.
"""
from typing import Optional, Sequence, Union

from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from insplug.core.layers.pyramid_pooling import PyramidPooling
from insplug.registry import MODELS


@MODELS.register_module()
class PyramidPoolingNeck(BaseModule):
    """Apply pyramid pooling to the selected levels; other levels pass through unchanged.

    Args:
        in_channels: channels of every level (int) or a list with one entry per level.
        levels: indices of the levels to transform (default: the last, coarsest one).
        channels: channels of each pooled branch (default in_channels // 4).
        out_channels: output channels of a transformed level (default: its input channels, so
            the neck can be inserted without changing the modules after it).
        pool_sizes: grid sizes (1, 2, 3, 6).
        norm_cfg: mmcv norm config after each convolution (None: biased convs, SparseInst's
            form; ``dict(type='BN')`` with ``bottleneck_kernel=3`` is PSPNet's form).
        bottleneck_kernel: kernel size of the fusing convolution.
    """

    def __init__(self, in_channels: Union[int, Sequence[int]], levels: Sequence[int] = (-1,),
                 channels: Optional[int] = None, out_channels: Optional[int] = None,
                 pool_sizes: Sequence[int] = (1, 2, 3, 6), norm_cfg: Optional[dict] = None,
                 bottleneck_kernel: int = 1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not levels:
            raise ValueError('PyramidPoolingNeck: levels must name at least one level')
        self.in_channels = in_channels
        self.levels = tuple(int(i) for i in levels)
        norm_layer = None
        if norm_cfg is not None:
            def norm_layer(num_channels):
                return build_norm_layer(norm_cfg, num_channels)[1]
        self.ppms = nn.ModuleList()
        for level in self.levels:
            if isinstance(in_channels, int):
                level_channels = in_channels
            else:
                try:
                    level_channels = in_channels[level]
                except IndexError:
                    raise ValueError(f'PyramidPoolingNeck: level {level} is out of range for '
                                     f'in_channels={list(in_channels)}') from None
            self.ppms.append(PyramidPooling(level_channels, channels, out_channels, pool_sizes,
                                            norm_layer, bottleneck_kernel))

    def forward(self, inputs):
        """Tuple of (B, C_l, H_l, W_l) maps (or one map) -> tuple with the chosen levels pooled."""
        single = not isinstance(inputs, (tuple, list))
        feats = [inputs] if single else list(inputs)
        for level, ppm in zip(self.levels, self.ppms):
            if not -len(feats) <= level < len(feats):
                raise ValueError(f'PyramidPoolingNeck: level {level} does not exist in the '
                                 f'{len(feats)} input feature maps; fix `levels`')
            feats[level] = ppm(feats[level])
        return feats[0] if single else tuple(feats)
