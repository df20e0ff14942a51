"""ENet (Paszke et al., arXiv 1606.02147; official e-lab/ENet-training ``encoder.lua`` and
``decoder.lua``).

Shapes: B images, H x W input (multiple of 8). Stages: initial (stride 2, 16 channels),
stage 1 (stride 4, 64), stage 2 and 3 (stride 8, 128), decoder stage 4 (stride 4, 64) and
stage 5 (stride 2, 16); the release's final ``SpatialFullConvolution(16, classes, 2, 2, 2, 2)``
only with ``num_classes``.

Initial block: ``cat(conv3x3/2 (3 -> 13, bias), maxpool2x2(image))`` + BN + PReLU. Encoder
bottleneck (internal = C_out / 4): 1x1 conv (2x2/2 when downsampling, no bias) + BN + PReLU,
main conv (3x3 with bias; dilated 3x3 with bias; or asymmetric 5x1 (no bias) then 1x5 (bias)) +
BN + PReLU, 1x1 conv (no bias) + BN, spatial dropout (0.01 in stage 1, 0.1 after); the shortcut
max-pools (2x2/2, indices kept for the decoder) and zero-pads the channels; PReLU after the sum.
BN eps 1e-3. Stage 2: downsample, regular, dilated 2, asymmetric 5, dilated 4, regular, dilated 8,
asymmetric 5, dilated 16; stage 3 repeats it without the downsampling.
Decoder bottleneck (ReLU): 1x1 (no bias) + BN + ReLU, 3x3 conv or 3x3/2 transposed conv
(bias) + BN + ReLU, 1x1 (no bias) + BN; shortcut 1x1 (no bias) + BN (+ max-unpooling with the
encoder's indices when upsampling) when the width or size changes; ReLU after the sum.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STAGE_CHANNELS = (16, 64, 128, 128, 64, 16)
STAGE_STRIDES = (2, 4, 8, 8, 4, 2)
# (dilation, asymmetric kernel) of stages 2 / 3 after the downsampling block
STAGE2_PATTERN = ((1, 0), (2, 0), (1, 5), (4, 0), (1, 0), (8, 0), (1, 5), (16, 0))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3)


class InitialBlock(nn.Module):
    """(B, 3, H, W) -> (B, 16, H/2, W/2)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, 2, 1)
        self.bn = _bn(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2, 2)], dim=1)))


class EncoderBottleneck(nn.Module):
    """ENet encoder bottleneck: (B, C_in, H, W) -> (B, C, H/s, W/s) [+ pooling indices]."""

    def __init__(self, cin: int, cout: int, downsample: bool = False, dilation: int = 1,
                 asymmetric: int = 0, dropout: float = 0.1):
        super().__init__()
        internal = cout // 4
        self.downsample = downsample
        self.cin, self.cout = cin, cout
        k = 2 if downsample else 1
        main = [nn.Conv2d(cin, internal, k, k, bias=False), _bn(internal), nn.PReLU(internal)]
        if asymmetric:
            pad = (asymmetric - 1) // 2
            main += [nn.Conv2d(internal, internal, (asymmetric, 1), padding=(pad, 0), bias=False),
                     nn.Conv2d(internal, internal, (1, asymmetric), padding=(0, pad))]
        else:
            main.append(nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation))
        main += [_bn(internal), nn.PReLU(internal), nn.Conv2d(internal, cout, 1, bias=False),
                 _bn(cout), nn.Dropout2d(dropout)]
        self.main = nn.Sequential(*main)
        self.act = nn.PReLU(cout)

    def forward(self, x: Tensor):
        """Returns the output, and the (B, C_in, H/2, W/2) max-pool indices when downsampling."""
        indices = None
        other = x
        if self.downsample:
            other, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        if self.cout != self.cin:
            other = F.pad(other, (0, 0, 0, 0, 0, self.cout - self.cin))
        out = self.act(self.main(x) + other)
        return (out, indices) if self.downsample else out


class DecoderBottleneck(nn.Module):
    """ENet decoder bottleneck: (B, C_in, H, W) [+ indices] -> (B, C, sH, sW) (s = 2 when
    upsampling)."""

    def __init__(self, cin: int, cout: int, upsample: bool = False):
        super().__init__()
        internal = cout // 4
        self.upsample = upsample
        mid = (nn.ConvTranspose2d(internal, internal, 3, 2, 1, output_padding=1) if upsample
               else nn.Conv2d(internal, internal, 3, padding=1))
        self.main = nn.Sequential(nn.Conv2d(cin, internal, 1, bias=False), _bn(internal),
                                  nn.ReLU(inplace=True), mid, _bn(internal),
                                  nn.ReLU(inplace=True), nn.Conv2d(internal, cout, 1, bias=False),
                                  _bn(cout))
        self.other = (nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))
                      if cin != cout or upsample else None)

    def forward(self, x: Tensor, indices: Optional[Tensor] = None) -> Tensor:
        other = x if self.other is None else self.other(x)
        if self.upsample:
            other = F.max_unpool2d(other, indices, 2, 2)
        return F.relu(self.main(x) + other)


class ENet(nn.Module):
    """ENet trunk: (B, 3, H, W) -> stage outputs in ``out_indices``.

    Args:
        out_indices: 0 initial (stride 2, 16), 1 stage 1 (4, 64), 2 stage 2 (8, 128),
            3 stage 3 (8, 128), 4 stage 4 (4, 64), 5 stage 5 (2, 16). Default (5,).
        num_classes: optional final 2x2/2 transposed conv (the release's classifier, full
            resolution); its logits come last.
        in_channels: image channels (3).
    """

    def __init__(self, out_indices: Sequence[int] = (5,), num_classes: int = 0,
                 in_channels: int = 3):
        super().__init__()
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or any(not 0 <= i < 6 for i in self.out_indices):
            raise ValueError(f'ENet: out_indices {self.out_indices} must lie in [0, 6)')
        self.out_channels = [STAGE_CHANNELS[i] for i in self.out_indices]
        self.strides = [STAGE_STRIDES[i] for i in self.out_indices]
        self.initial = InitialBlock(in_channels, 16)
        self.down1 = EncoderBottleneck(16, 64, downsample=True, dropout=0.01)
        self.stage1 = nn.Sequential(*(EncoderBottleneck(64, 64, dropout=0.01) for _ in range(4)))
        self.down2 = EncoderBottleneck(64, 128, downsample=True, dropout=0.1)
        self.stage2 = nn.Sequential(*(
            EncoderBottleneck(128, 128, dilation=d, asymmetric=a, dropout=0.1)
            for d, a in STAGE2_PATTERN))
        self.stage3 = nn.Sequential(*(
            EncoderBottleneck(128, 128, dilation=d, asymmetric=a, dropout=0.1)
            for d, a in STAGE2_PATTERN))
        self.up4 = DecoderBottleneck(128, 64, upsample=True)
        self.stage4 = nn.Sequential(DecoderBottleneck(64, 64), DecoderBottleneck(64, 64))
        self.up5 = DecoderBottleneck(64, 16, upsample=True)
        self.stage5 = nn.Sequential(DecoderBottleneck(16, 16))
        self.classifier = (nn.ConvTranspose2d(16, num_classes, 2, 2) if num_classes else None)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f'ENet needs H and W divisible by 8 (max-unpooling), got '
                             f'{tuple(x.shape[-2:])}; pad the input (pad_size_divisor=8)')
        stages: List[Tensor] = [self.initial(x)]
        y, idx1 = self.down1(stages[0])
        stages.append(self.stage1(y))
        y, idx2 = self.down2(stages[1])
        stages.append(self.stage2(y))
        stages.append(self.stage3(stages[2]))
        stages.append(self.stage4(self.up4(stages[3], idx2)))
        stages.append(self.stage5(self.up5(stages[4], idx1)))
        outs = tuple(stages[i] for i in self.out_indices)
        return outs + (self.classifier(stages[5]),) if self.classifier is not None else outs
