"""Atrous spatial pyramid pooling (DeepLabv3, Chen et al., arXiv 1706.05587).

Shapes: B images, C input channels, H x W feature map (any size), C' channels per branch and
out.

Five parallel branches on the same map: a 1x1 conv, three 3x3 convs with atrous rates
(6, 12, 18 at output stride 16; double them at output stride 8) and image pooling (global
average pool, 1x1 conv, bilinear upsampling back to H x W), each followed by BN and ReLU; the
5 C' channels are concatenated and projected by a 1x1 conv + BN + ReLU, then dropout. This is
the official tensorflow/models deeplab ``_atrous_spatial_pyramid_pooling`` (``concat_projection``,
dropout keep-prob 0.9) and torchvision's ``deeplabv3.ASPP``, whose key layout (``convs.i``,
``project``) this module shares so torchvision weights load unchanged; torchvision's dropout is
0.5, the official 0.1 (the default here).
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._blocks import NormFactory, conv_norm_act


class ImagePooling(nn.Sequential):
    """Image-level features: (B, C, H, W) -> global mean -> 1x1 conv-BN-ReLU -> (B, C', H, W)."""

    def __init__(self, in_channels: int, channels: int, norm_layer: NormFactory = nn.BatchNorm2d):
        super().__init__(nn.AdaptiveAvgPool2d(1),
                         *conv_norm_act(in_channels, channels, 1, norm_layer=norm_layer))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def output_stride_rates(output_stride: int, base=(6, 12, 18)) -> tuple:
    """Atrous rates of DeepLabv3 for an output stride: (6, 12, 18) at 16, doubled at 8."""
    if output_stride not in (8, 16):
        raise ValueError(f'DeepLabv3 defines rates for output stride 8 or 16, got {output_stride}')
    return tuple(r * 16 // output_stride for r in base)


class ASPP(nn.Module):
    """ASPP: (B, C, H, W) -> (B, C', H, W).

    Args:
        in_channels: C.
        channels: C' (256 in DeepLabv3).
        dilations: atrous rates of the 3x3 branches ((6, 12, 18) at output stride 16).
        image_pooling: add the image-pooling branch.
        norm_layer: norm factory (BN; None = biased convolutions).
        dropout: dropout after the projection (official 0.1; torchvision 0.5).
    """

    def __init__(self, in_channels: int, channels: int = 256,
                 dilations: Sequence[int] = (6, 12, 18), image_pooling: bool = True,
                 norm_layer: NormFactory = nn.BatchNorm2d, dropout: float = 0.1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, channels
        self.dilations = tuple(int(d) for d in dilations)
        branches = [conv_norm_act(in_channels, channels, 1, norm_layer=norm_layer)]
        branches += [conv_norm_act(in_channels, channels, 3, dilation=d, norm_layer=norm_layer)
                     for d in self.dilations]
        if image_pooling:
            branches.append(ImagePooling(in_channels, channels, norm_layer))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *conv_norm_act(len(branches) * channels, channels, 1, norm_layer=norm_layer),
            nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C', H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ASPP expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
