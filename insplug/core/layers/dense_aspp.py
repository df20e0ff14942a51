"""DenseASPP (Yang et al., CVPR 2018): densely connected atrous convolutions.

Shapes: B images, C input channels, H x W map, C1 bottleneck channels, C2 channels added by
each atrous layer, L layers (rates (3, 6, 12, 18, 24) in the paper and the official
DeepMotionAIResearch/DenseASPP release).

Layer i sees the concatenation of the input and all earlier layers' outputs
(C + i C2 channels) and runs [BN, ReLU] (not on the first layer: ``bn_start=False`` in the
release), 1x1 conv to C1, BN, ReLU, 3x3 conv with rate r_i to C2, dropout (0.1). The output is
the full concatenation (C + L C2 channels), optionally projected by a 1x1 conv to
``out_channels`` (the release ends with dropout + a 1x1 classifier).
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn


class DenseASPPLayer(nn.Sequential):
    """(B, C_in, H, W) -> (B, C2, H, W): [BN, ReLU,] 1x1 conv, BN, ReLU, atrous 3x3, dropout."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dilation: int,
                 dropout: float = 0.1, bn_start: bool = True):
        layers = []
        if bn_start:
            layers += [('norm1', nn.BatchNorm2d(in_channels)), ('relu1', nn.ReLU(inplace=True))]
        layers += [('conv1', nn.Conv2d(in_channels, mid_channels, 1)),
                   ('norm2', nn.BatchNorm2d(mid_channels)), ('relu2', nn.ReLU(inplace=True)),
                   ('conv2', nn.Conv2d(mid_channels, out_channels, 3, dilation=dilation,
                                       padding=dilation)),
                   ('dropout', nn.Dropout2d(dropout))]
        from collections import OrderedDict
        super().__init__(OrderedDict(layers))


class DenseASPP(nn.Module):
    """DenseASPP: (B, C, H, W) -> (B, C + L C2, H, W), or (B, out_channels, H, W).

    Args:
        in_channels: C.
        mid_channels: C1 (official 512 with 2048-channel input, 256 for DenseNet-121).
        growth_channels: C2 (official 128 / 64).
        dilations: rates (3, 6, 12, 18, 24).
        dropout: dropout after each layer (0.1).
        out_channels: optional 1x1 projection of the concatenation.
    """

    def __init__(self, in_channels: int, mid_channels: int = 512, growth_channels: int = 128,
                 dilations: Sequence[int] = (3, 6, 12, 18, 24), dropout: float = 0.1,
                 out_channels: Optional[int] = None):
        super().__init__()
        self.in_channels = in_channels
        self.layers = nn.ModuleList(
            DenseASPPLayer(in_channels + i * growth_channels, mid_channels, growth_channels, d,
                           dropout, bn_start=i > 0)
            for i, d in enumerate(dilations))
        concat = in_channels + len(self.layers) * growth_channels
        self.project = None if out_channels is None else nn.Conv2d(concat, out_channels, 1)
        self.out_channels = concat if out_channels is None else out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, out, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'DenseASPP expects (B, {self.in_channels}, H, W), got '
                             f'{tuple(x.shape)}')
        for layer in self.layers:
            x = torch.cat([layer(x), x], dim=1)
        return x if self.project is None else self.project(x)
