"""Dense upsampling convolution and hybrid dilated convolution (Wang et al., "Understanding
Convolution for Semantic Segmentation", WACV 2018; official TuSimple-DUC).

Shapes: B images, C input channels, H x W map, r upsampling factor, L output channels.

DUC predicts the r x r sub-pixels of every output location as channels: a 3x3 conv to r^2 L
channels (+ BN + ReLU when used as a feature upsampler; the release's final layer is the plain
conv to r^2 classes) reshaped to (B, L, rH, rW) (``pixel_shuffle``).

HDC replaces a constant dilation in a stack of 3x3 convolutions by a cycle of rates without a
common factor (e.g. 1, 2, 5, 9 in ResNet-101's res4 and 5, 9, 17 in res5 of the release), so that
the receptive field has no holes ("gridding"). :func:`max_gap_distance` checks the paper's
condition ``M_2 <= K`` for a rate cycle.
"""
from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ._blocks import NormFactory


class DUC(nn.Module):
    """DUC: (B, C, H, W) -> (B, L, r H, r W).

    Args:
        in_channels: C.
        out_channels: L.
        upscale: r.
        norm_layer: norm after the conv (None with ``act=False``: the release's classifier form).
        act: ReLU after the (normed) conv.
    """

    def __init__(self, in_channels: int, out_channels: int, upscale: int = 2,
                 norm_layer: NormFactory = nn.BatchNorm2d, act: bool = True):
        super().__init__()
        if upscale < 1:
            raise ValueError(f'DUC: upscale must be >= 1, got {upscale}')
        self.in_channels, self.out_channels, self.upscale = in_channels, out_channels, upscale
        mid = out_channels * upscale * upscale
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1, bias=norm_layer is None)
        self.norm = norm_layer(mid) if norm_layer is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, L, r H, r W)."""
        return F.pixel_shuffle(self.act(self.norm(self.conv(x))), self.upscale)


def hdc_dilations(num_layers: int, cycle: Sequence[int] = (1, 2, 5, 9)) -> List[int]:
    """Dilation of each of ``num_layers`` stacked convs, repeating ``cycle`` (HDC)."""
    return [int(cycle[i % len(cycle)]) for i in range(num_layers)]


def max_gap_distance(cycle: Sequence[int]) -> int:
    """HDC's M_2 for a rate cycle r_1..r_n: M_n = r_n, M_i = max(M_{i+1} - 2 r_i,
    M_{i+1} - 2 (M_{i+1} - r_i), r_i). A cycle is gridding-free for kernel K when M_2 <= K."""
    m = cycle[-1]
    for r in reversed(cycle[1:-1]):
        m = max(m - 2 * r, m - 2 * (m - r), r)
    return m


class HDCStack(nn.Module):
    """``num_layers`` 3x3 conv-BN-ReLU layers with HDC rates: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, num_layers: int, cycle: Sequence[int] = (1, 2, 5, 9),
                 norm_layer: NormFactory = nn.BatchNorm2d):
        super().__init__()
        from ._blocks import conv_norm_act
        self.dilations = hdc_dilations(num_layers, cycle)
        self.layers = nn.Sequential(*(conv_norm_act(channels, channels, 3, dilation=d,
                                                    norm_layer=norm_layer)
                                      for d in self.dilations))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
