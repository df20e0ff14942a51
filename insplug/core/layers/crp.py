"""Chained residual pooling and the Light-Weight RefineNet decoder (Nekrasov et al., BMVC 2018;
official DrSleep/light-weight-refinenet).

Shapes: B images, L levels with C_l channels at H_l x W_l (finest first), F the decoder width.

CRP (light-weight form): ``top = x; repeat n: top = conv1x1(maxpool5x5/1(top)); x = x + top``
(no ReLU inside; RefineNet's original uses 3x3 convs).

Decoder (the release's ``RefineNetLW``, generalised to L levels): from the coarsest level,
``x = relu(dimred(level) [+ adapt] + upsample(prev))`` (the coarsest has no previous and the
release widens it to 2F = 512 before its CRP), ``x = CRP(x)``, then a 1x1 conv ("varout_dimred")
to F before upsampling to the next level (bilinear, align_corners=True). The finest level's CRP
output is the result (the release then applies a 3x3 classifier).
"""
from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class ChainedResidualPooling(nn.Module):
    """CRP: (B, C_in, H, W) -> (B, C, H, W); ``C_in == C`` unless the first conv changes it.

    Args:
        in_channels: C_in. out_channels: C. num_stages: n (4).
        kernel_size: 1 (light-weight) or 3 (RefineNet).
    """

    def __init__(self, in_channels: int, out_channels: int, num_stages: int = 4,
                 kernel_size: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                      padding=kernel_size // 2, bias=False) for i in range(num_stages))
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)

    def forward(self, x: Tensor) -> Tensor:
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = top + x
        return x


class LightWeightRefineNetDecoder(nn.Module):
    """L maps (finest first) -> (B, F, H_0, W_0) (or K classes with ``num_classes``).

    Args:
        in_channels: (C_0, ..., C_{L-1}) (ResNet: 256, 512, 1024, 2048).
        channels: F (256).
        top_channels: width of the coarsest stage (512 in the release; default 2 F).
        num_stages: CRP stages (4).
        num_classes: optional 3x3 classifier (the release's ``clf_conv``).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 top_channels: Optional[int] = None, num_stages: int = 4,
                 num_classes: Optional[int] = None):
        super().__init__()
        top_channels = top_channels or 2 * channels
        levels = len(in_channels)
        self.in_channels = tuple(in_channels)
        widths = [channels] * (levels - 1) + [top_channels]
        self.dimred = nn.ModuleList(nn.Conv2d(c, w, 1, bias=False)
                                    for c, w in zip(in_channels, widths))
        # the release's adapt_stage*_b2_joint_varout_dimred: 1x1 after dimred, below the top
        self.adapt = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False)
                                   for _ in range(levels - 1))
        self.crp = nn.ModuleList(ChainedResidualPooling(w, w, num_stages) for w in widths)
        self.varout = nn.ModuleList(nn.Conv2d(w, channels, 1, bias=False) for w in widths[1:])
        self.classifier = (None if num_classes is None else
                           nn.Conv2d(channels, num_classes, 3, padding=1))
        self.out_channels = channels if num_classes is None else num_classes

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != len(self.in_channels):
            raise ValueError(f'LightWeightRefineNetDecoder expects {len(self.in_channels)} '
                             f'levels, got {len(feats)}')
        x = None
        for i in reversed(range(len(feats))):
            y = self.dimred[i](feats[i])
            if x is not None:
                y = self.adapt[i](y) + F.interpolate(x, size=y.shape[-2:], mode='bilinear',
                                                     align_corners=True)
            x = self.crp[i](F.relu(y))
            if i > 0:
                x = self.varout[i - 1](x)
        return x if self.classifier is None else self.classifier(x)
