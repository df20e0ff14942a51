"""Dilated residual networks (Yu, Koltun & Funkhouser, CVPR 2017; official fyu/drn ``drn.py``).

Shapes: B images, H x W input. Eight levels: level 1 (7x7 conv, stride 1) and 2 keep stride
1 and 2, levels 3 and 4 stride 4 and 8, then levels 5-8 stay at stride 8 with dilations 2, 4, 2,
1 (the classification network's last two downsamplings replaced by dilation).

* DRN-C: ResNet blocks in levels 1-6 (``BasicBlock`` or ``Bottleneck``), and two residual-free
  ``BasicBlock`` levels 7-8 (dilation 2, then 1) that remove gridding;
* DRN-D: levels 1-2 and 7-8 are plain 3x3 conv-BN-ReLU layers (no residual).

The first block of a level that raises the dilation uses half of it in its first conv
(``dilation // 2`` on ``new_level``), as the release does. Key layout as the release
(``conv1``/``bn1`` or ``layer0``, ``layer1`` ... ``layer8``; the classifier ``fc`` only with
``num_classes``), so released checkpoints load unchanged.
"""
from typing import Dict, List, Sequence, Tuple

from torch import Tensor, nn

ARCHS: Dict[str, Tuple[str, str, Tuple[int, ...]]] = {
    # name: (arch, block, blocks per level)
    'drn_c_26': ('C', 'basic', (1, 1, 2, 2, 2, 2, 1, 1)),
    'drn_c_42': ('C', 'basic', (1, 1, 3, 4, 6, 3, 1, 1)),
    'drn_c_58': ('C', 'bottleneck', (1, 1, 3, 4, 6, 3, 1, 1)),
    'drn_d_22': ('D', 'basic', (1, 1, 2, 2, 2, 2, 1, 1)),
    'drn_d_24': ('D', 'basic', (1, 1, 2, 2, 2, 2, 2, 2)),
    'drn_d_38': ('D', 'basic', (1, 1, 3, 4, 6, 3, 1, 1)),
    'drn_d_40': ('D', 'basic', (1, 1, 3, 4, 6, 3, 2, 2)),
    'drn_d_54': ('D', 'bottleneck', (1, 1, 3, 4, 6, 3, 1, 1)),
    'drn_d_56': ('D', 'bottleneck', (1, 1, 3, 4, 6, 3, 2, 2)),
    'drn_d_105': ('D', 'bottleneck', (1, 1, 3, 4, 23, 3, 1, 1)),
    'drn_d_107': ('D', 'bottleneck', (1, 1, 3, 4, 23, 3, 2, 2)),
}
STRIDES = (1, 2, 4, 8, 8, 8, 8, 8)


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (dilations d0, d1), optional residual: (B, C_in, H, W) -> (B, C, H/s, W/s)."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None,
                 dilation=(1, 1), residual: bool = True):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1, 3x3 (stride, dilation d1; the release ignores d0 and ``residual``), 1x1 x4."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None,
                 dilation=(1, 1), residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class DRN(nn.Module):
    """DRN-C / DRN-D trunk: (B, 3, H, W) -> tuple of the levels in ``out_indices``.

    Args:
        arch: a name of :data:`ARCHS` (``drn_c_26``, ``drn_d_54``, ...).
        out_indices: levels to return, 0 = level 1 (stride 1) ... 7 = level 8 (stride 8).
            Default (1, 2, 3, 7): levels 2, 3, 4 and 8 (strides 2, 4, 8, 8).
        channels: per-level widths (16, 32, 64, 128, 256, 512, 512, 512).
        num_classes: optional 1x1 classifier ``fc`` (1000 on ImageNet; with it the parameter
            count is the release's README figure).
        in_channels: image channels (3).
    """

    def __init__(self, arch: str = 'drn_d_54', out_indices: Sequence[int] = (1, 2, 3, 7),
                 channels: Sequence[int] = (16, 32, 64, 128, 256, 512, 512, 512),
                 num_classes: int = 0, in_channels: int = 3):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f'DRN: unknown arch {arch!r}; choose one of {sorted(ARCHS)}')
        kind, block_name, layers = ARCHS[arch]
        block = BasicBlock if block_name == 'basic' else Bottleneck
        self.arch, self.kind = arch, kind
        self.inplanes = channels[0]
        self._level_channels: List[int] = []
        if kind == 'C':
            self.conv1 = nn.Conv2d(in_channels, channels[0], 7, 1, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(channels[0])
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(BasicBlock, channels[0], layers[0], stride=1)
            self.layer2 = self._make_layer(BasicBlock, channels[1], layers[1], stride=2)
        else:
            self.layer0 = nn.Sequential(nn.Conv2d(in_channels, channels[0], 7, 1, 3, bias=False),
                                        nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
            self.layer1 = self._make_conv_layers(channels[0], layers[0], stride=1)
            self.layer2 = self._make_conv_layers(channels[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, channels[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, channels[3], layers[3], stride=2)
        self.layer5 = self._make_layer(block, channels[4], layers[4], dilation=2, new_level=False)
        self.layer6 = (None if layers[5] == 0 else
                       self._make_layer(block, channels[5], layers[5], dilation=4,
                                        new_level=False))
        if kind == 'C':
            self.layer7 = (None if layers[6] == 0 else self._make_layer(
                BasicBlock, channels[6], layers[6], dilation=2, new_level=False, residual=False))
            self.layer8 = (None if layers[7] == 0 else self._make_layer(
                BasicBlock, channels[7], layers[7], dilation=1, new_level=False, residual=False))
        else:
            self.layer7 = (None if layers[6] == 0 else
                           self._make_conv_layers(channels[6], layers[6], dilation=2))
            self.layer8 = (None if layers[7] == 0 else
                           self._make_conv_layers(channels[7], layers[7], dilation=1))
        self.num_levels = sum(1 for i in range(1, 9) if getattr(self, f'layer{i}') is not None)
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or any(not 0 <= i < self.num_levels for i in self.out_indices):
            raise ValueError(f'DRN {arch}: out_indices {self.out_indices} must lie in '
                             f'[0, {self.num_levels})')
        self.out_channels = [self._level_channels[i] for i in self.out_indices]
        self.strides = [STRIDES[i] for i in self.out_indices]
        self.fc = nn.Conv2d(self._level_channels[-1], num_classes, 1) if num_classes else None
        for m in self.modules():  # the release's initialisation
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1, new_level=True,
                    residual=True) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        layers = [block(self.inplanes, planes, stride, downsample, first, residual)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, residual=residual, dilation=(dilation, dilation))
                   for _ in range(1, blocks)]
        self._level_channels.append(self.inplanes)
        return nn.Sequential(*layers)

    def _make_conv_layers(self, channels, convs, stride=1, dilation=1) -> nn.Sequential:
        modules = []
        for i in range(convs):
            modules += [nn.Conv2d(self.inplanes, channels, 3, stride if i == 0 else 1,
                                  padding=dilation, dilation=dilation, bias=False),
                        nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            self.inplanes = channels
        self._level_channels.append(self.inplanes)
        return nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> levels in ``out_indices`` ((B, C_l, ceil(H / s_l), ceil(W / s_l)));
        with ``num_classes`` the release's ``out_map`` logits (B, K, H / 8, W / 8) come last."""
        x = self.relu(self.bn1(self.conv1(x))) if self.kind == 'C' else self.layer0(x)
        levels = []
        for i in range(1, 9):
            layer = getattr(self, f'layer{i}')
            if layer is not None:
                x = layer(x)
                levels.append(x)
        outs = tuple(levels[i] for i in self.out_indices)
        return outs + (self.fc(x),) if self.fc is not None else outs
