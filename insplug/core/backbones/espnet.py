"""ESPNet v1 encoder (ESPNet-C; Mehta et al., ECCV 2018; official sacmehta/ESPNet
``train/Model.py`` ``ESPNet_Encoder``).

Shapes: B images, H x W input; levels at strides 2, 4, 8 with 19, 131 and 256 channels.

ESP module (reduce-split-transform-merge): a 1x1 conv to n = C/5 channels (a strided 3x3 conv
in the downsampling variant), five parallel 3x3 convs with dilations 1, 2, 4, 8, 16 (the first
gets C - 4n channels), hierarchical feature fusion (the dilated outputs are summed
cumulatively: d2, d2+d4, d2+d4+d8, ...), concatenation, the residual input (not in the
downsampler), BN + PReLU. Level 1: 3x3/2 CBR to 16 channels, concatenated with the image
average-pooled once (input reinforcement), BN + PReLU (19 channels). Level 2: a downsampling
ESP module to 64, ``p`` ESP modules, concatenated with the downsampler output and the image
pooled twice (131). Level 3: downsampler to 128, ``q`` ESP modules, concatenated with the
downsampler output (256). The classification ``classifier`` (1x1 conv) only with
``num_classes``. Key layout as the release (``level1``, ``b1``, ``level2_0``, ``level2.i``, ...).
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn


class CBR(nn.Module):
    """Conv (no bias) + BN (eps 1e-3) + PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.PReLU(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class BR(nn.Module):
    """BN (eps 1e-3) + PReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(x))


class _Conv(nn.Module):
    """The release's ``C`` / ``CDilated``: a bias-free conv under a ``conv`` attribute."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation,
                              dilation=dilation, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ESPModule(nn.Module):
    """ESP module: (B, C_in, H, W) -> (B, C, H / s, W / s) (s = 2 when ``downsample``).

    ``downsample``: the release's ``DownSamplerB`` (strided 3x3 reduce, BN + PReLU after the
    merge, no residual); otherwise ``DilatedParllelResidualBlockB`` (1x1 reduce, residual when
    ``add`` and C_in == C, then ``bn`` = BR).
    """

    def __init__(self, cin: int, cout: int, downsample: bool = False, add: bool = True):
        super().__init__()
        n = cout // 5
        n1 = cout - 4 * n
        self.downsample = downsample
        self.c1 = _Conv(cin, n, 3, 2) if downsample else _Conv(cin, n, 1, 1)
        self.d1 = _Conv(n, n1, 3, 1, 1)
        self.d2 = _Conv(n, n, 3, 1, 2)
        self.d4 = _Conv(n, n, 3, 1, 4)
        self.d8 = _Conv(n, n, 3, 1, 8)
        self.d16 = _Conv(n, n, 3, 1, 16)
        if downsample:
            self.bn = nn.BatchNorm2d(cout, eps=1e-3)
            self.act = nn.PReLU(cout)
        else:
            self.bn = BR(cout)
        self.add = add and not downsample and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.c1(x)
        add1 = self.d2(y)
        add2 = add1 + self.d4(y)
        add3 = add2 + self.d8(y)
        add4 = add3 + self.d16(y)
        out = torch.cat([self.d1(y), add1, add2, add3, add4], dim=1)
        if self.downsample:
            return self.act(self.bn(out))
        return self.bn(x + out if self.add else out)


class ESPNetEncoder(nn.Module):
    """ESPNet-C: (B, 3, H, W) -> levels in ``out_indices``.

    Args:
        p: ESP modules at level 2 (alpha_2; 2 in ESPNet, 5 in ESPNet-C's default).
        q: ESP modules at level 3 (alpha_3; 8 in the paper's ESPNet, 3 by default in the code).
        out_indices: 0 = level 1 (stride 2, 19 channels), 1 = level 2 (stride 4, 131),
            2 = level 3 (stride 8, 256).
        num_classes: optional 1x1 classifier on level 3 (the release's ``classifier``); its
            logits come last in the output tuple.
    """
    channels = (19, 131, 256)
    strides = (2, 4, 8)

    def __init__(self, p: int = 2, q: int = 8, out_indices: Sequence[int] = (0, 1, 2),
                 num_classes: int = 0):
        super().__init__()
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or any(not 0 <= i < 3 for i in self.out_indices):
            raise ValueError(f'ESPNetEncoder: out_indices {self.out_indices} must lie in [0, 3)')
        self.out_channels = [self.channels[i] for i in self.out_indices]
        self.level1 = CBR(3, 16, 3, 2)
        self.sample1 = nn.ModuleList([nn.AvgPool2d(3, stride=2, padding=1)])
        self.sample2 = nn.ModuleList([nn.AvgPool2d(3, stride=2, padding=1) for _ in range(2)])
        self.b1 = BR(16 + 3)
        self.level2_0 = ESPModule(16 + 3, 64, downsample=True)
        self.level2 = nn.ModuleList(ESPModule(64, 64) for _ in range(p))
        self.b2 = BR(128 + 3)
        self.level3_0 = ESPModule(128 + 3, 128, downsample=True)
        self.level3 = nn.ModuleList(ESPModule(128, 128) for _ in range(q))
        self.b3 = BR(256)
        self.classifier = _Conv(256, num_classes, 1) if num_classes else None

    @staticmethod
    def _pool(x: Tensor, pools: nn.ModuleList) -> Tensor:
        for pool in pools:
            x = pool(x)
        return x

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> (B, 19, H/2, W/2), (B, 131, H/4, W/4), (B, 256, H/8, W/8) (ceil)."""
        out0 = self.b1(torch.cat([self.level1(x), self._pool(x, self.sample1)], dim=1))
        out1_0 = self.level2_0(out0)
        out1 = out1_0
        for layer in self.level2:
            out1 = layer(out1)
        out1 = self.b2(torch.cat([out1, out1_0, self._pool(x, self.sample2)], dim=1))
        out2_0 = self.level3_0(out1)
        out2 = out2_0
        for layer in self.level3:
            out2 = layer(out2)
        out2 = self.b3(torch.cat([out2_0, out2], dim=1))
        levels = (out0, out1, out2)
        outs = tuple(levels[i] for i in self.out_indices)
        return outs + (self.classifier(out2),) if self.classifier is not None else outs
