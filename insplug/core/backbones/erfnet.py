"""ERFNet encoder-decoder (Romera et al., 2018), branched as in SpatialEmbeddings (Neven et al.).

Shape shorthand: B images, C channels, H/W input size (multiples of 8).

The encoder halves the resolution three times with "downsampler" blocks (a strided 3x3 conv
concatenated with a max-pool of its input) and refines with factorised residual blocks (3x1 and
1x3 convs, the second pair dilated). Each decoder doubles the resolution twice with transposed
convs and refines again. SpatialEmbeddings shares one encoder between several decoders ("branches":
one for offsets and sigma, one for seeds); the final stride-2 transposed conv that maps a branch to
its outputs belongs to the head, so this module returns the branch features at stride 2.

Default widths and depths follow ERFNet: encoder 16 -> 64 (5 blocks, dropout 0.03) -> 128
(2 x dilations 2/4/8/16, dropout 0.3); decoder 128 -> 64 (2 blocks) -> 16 (2 blocks).
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['DownsamplerBlock', 'NonBottleneck1d', 'UpsamplerBlock', 'ERFNetEncoder',
           'ERFNetDecoder', 'ERFNet']

BN_EPS = 1e-3


class DownsamplerBlock(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): strided conv features ++ max-pooled input."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f'DownsamplerBlock: out_channels ({out_channels}) must exceed '
                             f'in_channels ({in_channels}); the pooled input is concatenated')
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1d(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): two factorised 3x3 convs (second dilated) + identity."""

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1):
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0),
                                   dilation=(dilation, 1))
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation),
                                   dilation=(1, dilation))
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1x3_1(F.relu(self.conv3x1_1(x)))))
        y = self.bn2(self.conv1x3_2(F.relu(self.conv3x1_2(y))))
        return F.relu(self.dropout(y) + x)


class UpsamplerBlock(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, 2H, 2W): transposed 3x3 conv, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                       output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class ERFNetEncoder(nn.Module):
    """(B, in_channels, H, W) -> (B, channels[2], H/8, W/8).

    Args:
        in_channels: image channels.
        channels: widths after each of the three downsamplers.
        num_blocks_mid: residual blocks at stride 4.
        num_dilation_cycles: repeats of the dilated blocks at stride 8.
        dilations: dilation of each block in one cycle at stride 8.
        dropout: (stride 4, stride 8) dropout probabilities.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (16, 64, 128),
                 num_blocks_mid: int = 5, num_dilation_cycles: int = 2,
                 dilations: Sequence[int] = (2, 4, 8, 16),
                 dropout: Sequence[float] = (0.03, 0.3)):
        super().__init__()
        c1, c2, c3 = channels
        layers = [DownsamplerBlock(in_channels, c1), DownsamplerBlock(c1, c2)]
        layers += [NonBottleneck1d(c2, dropout[0], 1) for _ in range(num_blocks_mid)]
        layers.append(DownsamplerBlock(c2, c3))
        layers += [NonBottleneck1d(c3, dropout[1], d)
                   for _ in range(num_dilation_cycles) for d in dilations]
        self.layers = nn.Sequential(*layers)
        self.out_channels = c3

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ERFNetDecoder(nn.Module):
    """(B, channels[0], H/8, W/8) -> (B, channels[2], H/2, W/2).

    Args:
        channels: input width, then the width after each of the two upsamplers.
        num_blocks: residual blocks after each upsampler.
    """

    def __init__(self, channels: Sequence[int] = (128, 64, 16), num_blocks: int = 2):
        super().__init__()
        c0, c1, c2 = channels
        layers = [UpsamplerBlock(c0, c1)] + [NonBottleneck1d(c1) for _ in range(num_blocks)]
        layers += [UpsamplerBlock(c1, c2)] + [NonBottleneck1d(c2) for _ in range(num_blocks)]
        self.layers = nn.Sequential(*layers)
        self.out_channels = c2

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ERFNet(nn.Module):
    """Shared ERFNet encoder with ``num_branches`` decoders.

    Args:
        in_channels: image channels.
        num_branches: number of decoders (2 in SpatialEmbeddings: offsets+sigma, seeds).
        encoder_channels, num_blocks_mid, num_dilation_cycles, dilations, dropout: encoder
            settings (see :class:`ERFNetEncoder`).
        decoder_channels: widths after the decoder's two upsamplers.
        decoder_blocks: residual blocks after each decoder upsampler.

    Forward: (B, in_channels, H, W) -> tuple of ``num_branches`` (B, decoder_channels[-1],
    H/2, W/2) tensors. H and W must be multiples of 8.
    """

    def __init__(self, in_channels: int = 3, num_branches: int = 2,
                 encoder_channels: Sequence[int] = (16, 64, 128), num_blocks_mid: int = 5,
                 num_dilation_cycles: int = 2, dilations: Sequence[int] = (2, 4, 8, 16),
                 dropout: Sequence[float] = (0.03, 0.3),
                 decoder_channels: Sequence[int] = (64, 16), decoder_blocks: int = 2):
        super().__init__()
        if num_branches < 1:
            raise ValueError(f'ERFNet: num_branches must be >= 1, got {num_branches}')
        self.encoder = ERFNetEncoder(in_channels, encoder_channels, num_blocks_mid,
                                     num_dilation_cycles, dilations, dropout)
        dec = (encoder_channels[-1],) + tuple(decoder_channels)
        self.decoders = nn.ModuleList(ERFNetDecoder(dec, decoder_blocks)
                                      for _ in range(num_branches))
        self.out_channels = dec[-1]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        height, width = x.shape[-2:]
        if height % 8 or width % 8:
            raise ValueError(f'ERFNet: input size {height}x{width} must be a multiple of 8; set '
                             '`pad_size_divisor=8` (or 32) in the data preprocessor')
        feats = self.encoder(x)
        return tuple(decoder(feats) for decoder in self.decoders)
