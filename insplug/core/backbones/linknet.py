"""LinkNet (Chaurasia & Culurciello, VCIP 2017; official e-lab/LinkNet ``models/model.lua``).

Shapes: B images, H x W input (any size; transposed convs are given the skip's size), widths
w = (64, 128, 256, 512) for ResNet-18.

Encoder: ResNet-18 (7x7/2 conv-BN-ReLU, 3x3/2 max-pool, four stages of two basic blocks, the
first stage at stride 1 and the others at stride 2; torchvision key layout ``conv1``, ``bn1``,
``layer1`` ... ``layer4`` so ImageNet weights load). Decoder block D(m, n, s): 1x1 conv m -> m/4
+ BN + ReLU, 3x3 transposed conv (stride s) + BN + ReLU, 1x1 conv m/4 -> n + BN + ReLU (convs
with bias, BN eps 1e-3). As in the release, each decoder's output is added to the INPUT of the
matching encoder stage and followed by ReLU:

    x0 = maxpool(stem(x))                 stride 4, w0
    e1 = layer1(x0), e2 = layer2(e1), e3 = layer3(e2), e4 = layer4(e3)
    p3 = relu(e3 + D(w3, w2, 2)(e4))      stride 16
    p2 = relu(e2 + D(w2, w1, 2)(p3))      stride 8
    p1 = relu(e1 + D(w1, w0, 2)(p2))      stride 4
    p0 = relu(x0 + D(w0, w0, 1)(p1))      stride 4
    f  = relu(BN(conv3x3(relu(BN(fullconv3x3/2(p0))))))   stride 2, w0 / 2
and the release's classifier is a 2x2/2 transposed conv f -> classes (``num_classes``).
"""
from typing import Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision layout): (B, C_in, H, W) -> (B, C, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class LinkNetDecoderBlock(nn.Module):
    """D(m, n, s): (B, m, H, W) -> (B, n, *out_size) (s H x s W by default)."""

    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        mid = cin // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self.full_conv = nn.ConvTranspose2d(mid, mid, 3, stride, 1,
                                            output_padding=1 if stride > 1 else 0)
        self.bn2 = nn.BatchNorm2d(mid, eps=1e-3)
        self.conv2 = nn.Conv2d(mid, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor, out_size=None) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.full_conv(x, output_size=out_size)))
        return F.relu(self.bn3(self.conv2(x)))


class LinkNet(nn.Module):
    """LinkNet: (B, 3, H, W) -> levels in ``out_indices``.

    Args:
        out_indices: 0 = f (stride 2, w0 / 2), 1 = p0 (stride 4, w0), 2 = p1 (stride 4, w0),
            3 = p2 (stride 8, w1), 4 = p3 (stride 16, w2), 5 = e4 (stride 32, w3).
            Default (0,): the full-resolution-most features before the classifier.
        widths: encoder widths (64, 128, 256, 512) = ResNet-18; smaller for CPU demos.
        blocks: basic blocks per encoder stage ((2, 2, 2, 2)).
        num_classes: optional final 2x2/2 transposed conv (the release's classifier).
        in_channels: image channels.
    """

    def __init__(self, out_indices: Sequence[int] = (0,),
                 widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 0,
                 in_channels: int = 3):
        super().__init__()
        w = tuple(int(c) for c in widths)
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or any(not 0 <= i < 6 for i in self.out_indices):
            raise ValueError(f'LinkNet: out_indices {self.out_indices} must lie in [0, 6)')
        level_channels = (w[0] // 2, w[0], w[0], w[1], w[2], w[3])
        self.out_channels = [level_channels[i] for i in self.out_indices]
        self.strides = [(2, 4, 4, 8, 16, 32)[i] for i in self.out_indices]
        self.conv1 = nn.Conv2d(in_channels, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w[0]
        for i, (c, n) in enumerate(zip(w, blocks)):
            stage = [BasicBlock(cin, c, 1 if i == 0 else 2)]
            stage += [BasicBlock(c, c) for _ in range(1, n)]
            setattr(self, f'layer{i + 1}', nn.Sequential(*stage))
            cin = c
        self.decoder4 = LinkNetDecoderBlock(w[3], w[2], 2)
        self.decoder3 = LinkNetDecoderBlock(w[2], w[1], 2)
        self.decoder2 = LinkNetDecoderBlock(w[1], w[0], 2)
        self.decoder1 = LinkNetDecoderBlock(w[0], w[0], 1)
        half = w[0] // 2
        self.final_deconv = nn.ConvTranspose2d(w[0], half, 3, 2, 1, output_padding=1)
        self.final_bn1 = nn.BatchNorm2d(half)  # the release uses the default eps (1e-5) here
        self.final_conv = nn.Conv2d(half, half, 3, 1, 1)
        self.final_bn2 = nn.BatchNorm2d(half, eps=1e-3)
        self.classifier = nn.ConvTranspose2d(half, num_classes, 2, 2) if num_classes else None

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> levels in ``out_indices`` (+ (B, K, H', W') logits, H' = 2 ceil(H/2))."""
        x0 = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        half_size = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)
        e1 = self.layer1(x0)
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        p3 = F.relu(e3 + self.decoder4(e4, e3.shape[-2:]))
        p2 = F.relu(e2 + self.decoder3(p3, e2.shape[-2:]))
        p1 = F.relu(e1 + self.decoder2(p2, e1.shape[-2:]))
        p0 = F.relu(x0 + self.decoder1(p1))
        f = F.relu(self.final_bn1(self.final_deconv(p0, output_size=half_size)))
        f = F.relu(self.final_bn2(self.final_conv(f)))
        levels = (f, p0, p1, p2, p3, e4)
        outs = tuple(levels[i] for i in self.out_indices)
        return outs + (self.classifier(f),) if self.classifier is not None else outs
