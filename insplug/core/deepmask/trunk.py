"""DeepMask trunk: a ResNet truncated after its stride-16 stage, as in the release.

Shapes: B images/windows; a W x W input gives the four SharpMask skip maps
(C1 x W/2 x W/2 stem, C2 x W/4 layer1, C3 x W/8 layer2, C4 x W/16 layer3).

The release (``DeepMask.lua``: ``createTrunk``) loads fb.resnet.torch's ResNet-50, replaces
batch norm by a fixed affine (``BNtoFixed``), removes ``layer4``/pooling/fc, and replaces the zero
padding of every 3x3 and 7x7 convolution by *symmetric* padding (Matlab ``padarray(...,
'symmetric')``: ``cba|abcd``; ``utils.updatePadding``). Max-pool padding is unchanged. Layout and
key names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1..3``), so torchvision
ImageNet weights load into it (their ``layer4``/``fc`` keys are not used).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d


def symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Symmetric (edge-including mirror) padding of the last two dims: ``cba|abcd|dcb``.

    Args:
        x: (..., H, W) with H, W >= pad.
        pad: int >= 0.

    Returns:
        (..., H + 2 pad, W + 2 pad).
    """
    if pad == 0:
        return x
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], -2)
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], -1)


class SymmetricPadConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose padding is symmetric instead of zeros (same parameters/keys)."""

    def forward(self, x: Tensor) -> Tensor:
        pad = self.padding[0]
        return F.conv2d(symmetric_pad(x, pad), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


def use_symmetric_padding(module: nn.Module) -> nn.Module:
    """Turn every 3x3 and 7x7 ``nn.Conv2d`` of ``module`` into a :class:`SymmetricPadConv2d`
    in place (the release's ``utils.updatePadding``). Returns ``module``."""
    for m in module.modules():
        if type(m) is nn.Conv2d and m.kernel_size in ((3, 3), (7, 7)):
            assert m.padding[0] == m.padding[1]
            m.__class__ = SymmetricPadConv2d
    return module


class DeepMaskResNetTrunk(nn.Module):
    """ResNet stem + layer1..layer3, returning the four maps SharpMask taps.

    Args:
        depth: 18, 34 or 50 (the release: 50).
        base_channels: stem width (64 in the release; smaller for CPU demos).
        norm: 'frozen' (the release's fixed affine BN) or 'bn' (trainable batch norm).
        padding: 'symmetric' (the release) or 'zeros'.
    """

    arch = {18: (BasicBlock, (2, 2, 2)), 34: (BasicBlock, (3, 4, 6)),
            50: (Bottleneck, (3, 4, 6))}

    def __init__(self, depth: int = 50, base_channels: int = 64, norm: str = 'frozen',
                 padding: str = 'symmetric'):
        super().__init__()
        block, layers = self.arch[depth]
        norm_layer = {'frozen': FrozenBatchNorm2d, 'bn': nn.BatchNorm2d}[norm]
        self.conv1 = nn.Conv2d(3, base_channels, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = base_channels
        self.layer1 = self._make_layer(block, base_channels, layers[0], 1, norm_layer)
        self.layer2 = self._make_layer(block, base_channels * 2, layers[1], 2, norm_layer)
        self.layer3 = self._make_layer(block, base_channels * 4, layers[2], 2, norm_layer)
        self.out_channels = (base_channels, base_channels * block.expansion,
                             base_channels * 2 * block.expansion,
                             base_channels * 4 * block.expansion)
        self.stride = 16
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if padding == 'symmetric':
            use_symmetric_padding(self)
        elif padding != 'zeros':
            raise ValueError(f"padding must be 'symmetric' or 'zeros', got {padding!r}")

    def _make_layer(self, block, planes, blocks, stride, norm_layer):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer=norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor):
        """x: (B, 3, H, W) -> (stem (B, C1, H/2, W/2), layer1 (B, C2, H/4, W/4),
        layer2 (B, C3, H/8, W/8), layer3 (B, C4, H/16, W/16)); sizes rounded up."""
        c1 = self.relu(self.bn1(self.conv1(x)))
        l1 = self.layer1(self.maxpool(c1))
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        return c1, l1, l2, l3
