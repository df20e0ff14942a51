"""UPerNet's fusion decoder: pyramid pooling on the top level, FPN top-down, multi-level fusion
(Xiao et al., ECCV 2018; official CSAILVision/semantic-segmentation-pytorch ``UPerNet``).

Shapes: B images, L levels with C_l channels at H_l x W_l (finest first, e.g. ResNet C2-C5),
F the FPN width (256), S pool scales.

Release order: the top level goes through a PPM whose branches pool, upsample bilinearly to the
top level's size, THEN apply 1x1 conv-BN-ReLU (512 channels); ``cat(top, branches)`` is fused
by a 3x3 conv-BN-ReLU to F. Top-down: each lower level's 1x1 conv-BN-ReLU lateral is added to
the upsampled coarser map and smoothed by a 3x3 conv-BN-ReLU (the PPM output itself is not
smoothed). All L maps are upsampled to the finest size, concatenated (L F channels) and fused
by a 3x3 conv-BN-ReLU (``conv_last.0``) to F; the release's 1x1 classifier is optional
(``num_classes``). Key layout as the release (``ppm_conv``, ``ppm_last_conv``, ``fpn_in``,
``fpn_out``, ``conv_last``).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def conv1x1_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class UPerNetFusion(nn.Module):
    """UPerNet decoder: L maps -> (B, F, H_0, W_0) (or (B, K, H_0, W_0) with a classifier).

    Args:
        in_channels: (C_0, ..., C_{L-1}), finest first (ResNet-50: 256, 512, 1024, 2048).
        channels: F (256).
        pool_scales: PPM grid sizes (1, 2, 3, 6).
        ppm_channels: PPM branch width (512).
        num_classes: optional 1x1 classifier after the fusion (the release's ``conv_last.1``).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), ppm_channels: int = 512,
                 num_classes: Optional[int] = None):
        super().__init__()
        if len(in_channels) < 1:
            raise ValueError('UPerNetFusion: in_channels needs at least one level')
        self.in_channels = tuple(in_channels)
        self.out_channels = channels if num_classes is None else num_classes
        top = in_channels[-1]
        self.pool_scales = tuple(pool_scales)
        self.ppm_conv = nn.ModuleList(conv1x1_bn_relu(top, ppm_channels) for _ in pool_scales)
        self.ppm_last_conv = conv3x3_bn_relu(top + len(pool_scales) * ppm_channels, channels)
        self.fpn_in = nn.ModuleList(conv1x1_bn_relu(c, channels) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(conv3x3_bn_relu(channels, channels)
                                     for _ in in_channels[:-1])
        last = [conv3x3_bn_relu(len(in_channels) * channels, channels)]
        if num_classes is not None:
            last.append(nn.Conv2d(channels, num_classes, 1))
        self.conv_last = nn.Sequential(*last)

    def pyramid(self, feats: Sequence[Tensor]) -> List[Tensor]:
        """L maps (finest first) -> L (B, F, H_l, W_l) maps after PPM + FPN (finest first)."""
        if len(feats) != len(self.in_channels):
            raise ValueError(f'UPerNetFusion expects {len(self.in_channels)} levels, got '
                             f'{len(feats)}')
        top = feats[-1]
        size = top.shape[-2:]
        ppm = [top] + [conv(_resize(F.adaptive_avg_pool2d(top, s), size))
                       for s, conv in zip(self.pool_scales, self.ppm_conv)]
        f = self.ppm_last_conv(torch.cat(ppm, dim=1))
        out = [f]
        for i in reversed(range(len(feats) - 1)):
            lateral = self.fpn_in[i](feats[i])
            f = lateral + _resize(f, lateral.shape[-2:])
            out.append(self.fpn_out[i](f))
        return out[::-1]

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """L maps (finest first) -> (B, F or K, H_0, W_0)."""
        pyramid = self.pyramid(feats)
        size = pyramid[0].shape[-2:]
        return self.conv_last(torch.cat([pyramid[0]] + [_resize(p, size) for p in pyramid[1:]],
                                        dim=1))


class UPerNetSemanticBranch(nn.Module):
    """UPerNet fusion as a semantic branch: L maps -> features (B, F, H_0, W_0) and one
    foreground logit map (B, H_0, W_0) (a 1x1 conv), the interface of RefineMask's semantic
    branch. ``multi_level = True`` tells a caller to pass all levels, not only the finest.

    Args: as :class:`UPerNetFusion` (``in_channels``, ``channels``, ``pool_scales``,
    ``ppm_channels``).
    """
    multi_level = True

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), ppm_channels: int = 512):
        super().__init__()
        self.fusion = UPerNetFusion(in_channels, channels, pool_scales, ppm_channels)
        self.logits = nn.Conv2d(channels, 1, 1)
        self.out_channels = channels

    def forward(self, feats: Sequence[Tensor]):
        """L maps (finest first) -> (B, F, H_0, W_0) features, (B, H_0, W_0) logits."""
        x = self.fusion(feats)
        return x, self.logits(x)[:, 0]
