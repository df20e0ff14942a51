"""Instance context encoder of SparseInst (paper Sec. 3.1).

Shapes: B images; backbone levels C3, C4, C5 at strides 8, 16, 32 with C_3, C_4, C_5 channels;
D encoder channels; H/8 x W/8 the output size (size of C3).

C5 is projected to D channels and enlarged in receptive field by a pyramid pooling module;
a top-down path adds it (nearest upsampling) to the projected C4, then C3; each level gets a
3x3 output convolution; the three outputs are upsampled bilinearly to stride 8, concatenated
(3D channels) and fused by a 1x1 convolution into one (B, D, H/8, W/8) map.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insplug.core.layers.pyramid_pooling import PyramidPooling, upsample_to

from .init import msra_fill, xavier_fill


def top_down_merge(coarse: Tensor, lateral: Tensor) -> Tensor:
    """FPN step: ``lateral + nearest_upsample(coarse)``.

    Args:
        coarse: (B, D, h, w) the coarser level's merged map.
        lateral: (B, D, H, W) the finer level's projection (H ~ 2h).

    Returns:
        (B, D, H, W).
    """
    return lateral + F.interpolate(coarse, size=lateral.shape[-2:], mode='nearest')


class InstanceContextEncoder(nn.Module):
    """C3-C5 -> one stride-8 map: (B, C_i, H_i, W_i) x 3 -> (B, D, H/8, W/8).

    Args:
        in_channels: channels of C3, C4, C5 (ResNet-50: 512, 1024, 2048).
        out_channels: D (256).
        pool_sizes: grid sizes of the pyramid pooling on C5.
        ppm_channels: channels of each pooled branch (default D // 4).
        context: optional module (B, D, h, w) -> (B, D, h, w) used on the projected C5 instead
            of the pyramid pooling (e.g. :class:`insplug.core.layers.aspp.ASPP`); kept under
            the attribute ``ppm``.
    """

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), out_channels: int = 256,
                 pool_sizes: Sequence[int] = (1, 2, 3, 6), ppm_channels: int = None,
                 context: Optional[nn.Module] = None):
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError('InstanceContextEncoder fuses exactly three levels (C3, C4, C5); got '
                             f'in_channels={list(in_channels)}: set the backbone out_indices to '
                             'the last three stages, e.g. (1, 2, 3) for ResNet')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.laterals = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.outputs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.ppm = context if context is not None else PyramidPooling(
            out_channels, ppm_channels or out_channels // 4, pool_sizes=pool_sizes)
        self.fusion = nn.Conv2d(out_channels * len(in_channels), out_channels, 1)
        for conv in list(self.laterals) + list(self.outputs):
            xavier_fill(conv)
        msra_fill(self.fusion)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """(C3, C4, C5) -> (B, D, H/8, W/8)."""
        if len(features) != len(self.laterals):
            raise ValueError(f'InstanceContextEncoder got {len(features)} feature maps, expects '
                             f'{len(self.laterals)} (C3, C4, C5)')
        for i, (f, c) in enumerate(zip(features, self.in_channels)):
            if f.shape[1] != c:
                raise ValueError(f'InstanceContextEncoder level {i} has {f.shape[1]} channels but '
                                 f'in_channels[{i}]={c}: set in_channels to the backbone outputs')
        merged = self.ppm(self.laterals[-1](features[-1]))
        outputs = [self.outputs[-1](merged)]
        for level in range(len(features) - 2, -1, -1):
            merged = top_down_merge(merged, self.laterals[level](features[level]))
            outputs.insert(0, self.outputs[level](merged))
        return self.fusion(torch.cat(upsample_to(outputs, outputs[0].shape[-2:]), dim=1))
