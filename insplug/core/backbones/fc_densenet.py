"""FC-DenseNet / "The One Hundred Layers Tiramisu" (Jegou et al., CVPRW 2017; official
SimJeg/FC-DenseNet ``FC-DenseNet.py`` and ``layers.py``).

Shapes: B images, H x W input (any size), k growth rate, n_i layers in block i (2 P + 1 blocks
for P pools; P = 5).

First a 3x3 conv to 48 channels. Down path: each dense block appends n_i layers (BN, ReLU, 3x3
conv with bias to k, dropout 0.2) to the stack (``cat(stack, new)``); the stack is kept as a
skip and transition-down (BN, ReLU, 1x1 conv keeping the width, dropout, 2x2 max-pool, floor)
halves it. The bottleneck block's new feature maps only (not its input) are upsampled by
transition-up: a 3x3/2 transposed conv ('valid': 2h + 1) to k n_bottleneck, centre-cropped to
the skip's size and concatenated as ``cat(upsampled, skip)``; an up block then appends n_i
layers; again only its new maps are upsampled next. The release ends with a 1x1 conv to the
classes (``num_classes`` here).

Variants: FC-DenseNet56 (k 12, 4 layers per block), 67 (k 16, 5), 103 (k 16,
4-5-7-10-12-15-12-10-7-5-4).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHS = {
    'fc_densenet56': dict(growth_rate=12, layers=(4,) * 11),
    'fc_densenet67': dict(growth_rate=16, layers=(5,) * 11),
    'fc_densenet103': dict(growth_rate=16, layers=(4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4)),
}


class BNReLUConv(nn.Sequential):
    """BN, ReLU, conv (k x k, bias, 'same'), dropout: (B, C_in, H, W) -> (B, C, H, W)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dropout: float = 0.2):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
                         nn.Dropout2d(dropout) if dropout > 0 else nn.Identity())


class DenseBlock(nn.Module):
    """n layers: (B, C, H, W) -> (stack (B, C + n k, H, W), new maps (B, n k, H, W))."""

    def __init__(self, cin: int, growth_rate: int, num_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(BNReLUConv(cin + i * growth_rate, growth_rate, 3, dropout)
                                    for i in range(num_layers))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        new: List[Tensor] = []
        for layer in self.layers:
            new.append(layer(x))
            x = torch.cat([x, new[-1]], dim=1)
        return x, torch.cat(new, dim=1)


def center_crop(x: Tensor, size) -> Tensor:
    """(B, C, h, w) -> (B, C, *size), centred (Lasagne's 'center' cropping: offset (h - H) // 2)."""
    top = (x.shape[-2] - size[0]) // 2
    left = (x.shape[-1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


class FCDenseNet(nn.Module):
    """FC-DenseNet: (B, 3, H, W) -> levels in ``out_indices``.

    Args:
        arch: 'fc_densenet56' | 'fc_densenet67' | 'fc_densenet103', or None with
            ``growth_rate`` / ``layers`` given.
        out_indices: 0 = the bottleneck's stack (stride 2^P), 1..P = the up path's stacks
            (strides 2^(P-1) ... 1). Default: the last (full resolution).
        first_channels: width of the first conv (48).
        dropout: dropout after every conv (0.2).
        num_classes: optional final 1x1 conv; its logits come last.
    """

    def __init__(self, arch: str = 'fc_densenet103', out_indices: Sequence[int] = (-1,),
                 growth_rate: int = None, layers: Sequence[int] = None,
                 first_channels: int = 48, dropout: float = 0.2, num_classes: int = 0,
                 in_channels: int = 3):
        super().__init__()
        spec = dict(ARCHS[arch]) if arch is not None else {}
        growth_rate = growth_rate or spec['growth_rate']
        layers = tuple(layers or spec['layers'])
        if len(layers) % 2 != 1:
            raise ValueError(f'FCDenseNet: layers needs 2 P + 1 entries, got {len(layers)}')
        pools = len(layers) // 2
        self.num_pools = pools
        self.first_conv = nn.Conv2d(in_channels, first_channels, 3, padding=1)
        c = first_channels
        self.down_blocks, self.transitions_down = nn.ModuleList(), nn.ModuleList()
        skips = []
        for i in range(pools):
            self.down_blocks.append(DenseBlock(c, growth_rate, layers[i], dropout))
            c += growth_rate * layers[i]
            skips.append(c)
            self.transitions_down.append(BNReLUConv(c, c, 1, dropout))
        self.bottleneck = DenseBlock(c, growth_rate, layers[pools], dropout)
        c += growth_rate * layers[pools]
        level_channels = [c]
        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i in range(pools):
            keep = growth_rate * layers[pools + i]
            self.transitions_up.append(nn.ConvTranspose2d(keep, keep, 3, 2))
            c = keep + skips[pools - 1 - i]
            self.up_blocks.append(DenseBlock(c, growth_rate, layers[pools + i + 1], dropout))
            c += growth_rate * layers[pools + i + 1]
            level_channels.append(c)
        n = len(level_channels)
        self.out_indices = tuple(int(i) % n for i in out_indices)
        if not self.out_indices or any(not -n <= int(i) < n for i in out_indices):
            raise ValueError(f'FCDenseNet: out_indices {tuple(out_indices)} must lie in '
                             f'[{-n}, {n})')
        self.out_channels = [level_channels[i] for i in self.out_indices]
        self.strides = [2 ** (pools - i) for i in self.out_indices]
        self.classifier = nn.Conv2d(c, num_classes, 1) if num_classes else None

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> levels ((B, C_l, ~H / s_l, ~W / s_l)) [+ (B, K, H, W) logits]."""
        stack = self.first_conv(x)
        skips = []
        for block, down in zip(self.down_blocks, self.transitions_down):
            stack, _ = block(stack)
            skips.append(stack)
            stack = F.max_pool2d(down(stack), 2)
        stack, new = self.bottleneck(stack)
        levels = [stack]
        for up, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            stack = torch.cat([center_crop(up(new), skip.shape[-2:]), skip], dim=1)
            stack, new = block(stack)
            levels.append(stack)
        outs = tuple(levels[i] for i in self.out_indices)
        return outs + (self.classifier(stack),) if self.classifier is not None else outs
