"""Pyramid pooling module (PSPNet, Zhao et al., CVPR 2017), as used by SparseInst's encoder.

Shapes: B images, C input channels, H x W feature map (any size, odd sizes included), S pool
sizes, C' channels per pooled branch, C_out output channels.

Each branch average-pools the map to an s x s grid, projects it with a 1x1 convolution
(+ optional norm) and ReLU, and is upsampled bilinearly back to H x W; the S branches and the
input are concatenated (S * C' + C channels) and fused by a bottleneck convolution + ReLU.
"""
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormFactory = Optional[Callable[[int], nn.Module]]


def upsample_to(features: Sequence[Tensor], size) -> List[Tensor]:
    """Bilinearly resize every (B, C_i, h_i, w_i) map to (B, C_i, *size)."""
    return [f if tuple(f.shape[-2:]) == tuple(size) else
            F.interpolate(f, size=size, mode='bilinear', align_corners=False) for f in features]


def _conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int,
                    norm_layer: NormFactory) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                        bias=norm_layer is None)]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """Pyramid pooling: (B, C, H, W) -> (B, C_out, H, W).

    Args:
        in_channels: C.
        channels: C', channels of each pooled branch (default C // 4, as in PSPNet and SparseInst).
        out_channels: C_out (default C).
        pool_sizes: grid sizes of the branches (default 1, 2, 3, 6).
        norm_layer: ``callable(num_channels) -> nn.Module`` inserted after each convolution, or
            None for biased convolutions without norm (SparseInst's choice; PSPNet uses BN).
        bottleneck_kernel: kernel size of the fusing convolution (1 in SparseInst, 3 in PSPNet).
    """

    def __init__(self, in_channels: int, channels: Optional[int] = None,
                 out_channels: Optional[int] = None, pool_sizes: Sequence[int] = (1, 2, 3, 6),
                 norm_layer: NormFactory = None, bottleneck_kernel: int = 1):
        super().__init__()
        if in_channels <= 0:
            raise ValueError(f'PyramidPooling: in_channels must be positive, got {in_channels}')
        if not pool_sizes or any(int(s) < 1 for s in pool_sizes):
            raise ValueError(f'PyramidPooling: pool_sizes must be positive ints, got {pool_sizes}')
        channels = channels if channels is not None else max(in_channels // 4, 1)
        out_channels = out_channels if out_channels is not None else in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.pool_sizes = tuple(int(s) for s in pool_sizes)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s),
                          *_conv_norm_relu(in_channels, channels, 1, norm_layer))
            for s in self.pool_sizes)
        self.bottleneck = _conv_norm_relu(in_channels + len(self.pool_sizes) * channels,
                                          out_channels, bottleneck_kernel, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C_out, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'PyramidPooling expects (B, {self.in_channels}, H, W) input, got '
                             f'{tuple(x.shape)}: set in_channels to the feature map channels')
        pooled = upsample_to([stage(x) for stage in self.stages], x.shape[-2:])
        return self.bottleneck(torch.cat(pooled + [x], dim=1))
