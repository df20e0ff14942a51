"""Small conv-norm-activation helpers shared by the semantic-segmentation layers.

Shapes: B images, C channels, H x W maps. A ``norm_layer`` is ``callable(num_channels) ->
nn.Module`` (default ``nn.BatchNorm2d``) or None (biased convolution, no norm).
"""
from typing import Callable, Optional

from torch import nn

NormFactory = Optional[Callable[[int], nn.Module]]


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                  dilation: int = 1, norm_layer: NormFactory = nn.BatchNorm2d,
                  act: bool = True) -> nn.Sequential:
    """Conv (padding keeps H x W at stride 1) + norm + ReLU as ``nn.Sequential`` (keys 0, 1, 2):
    (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                        padding=dilation * (kernel_size // 2), dilation=dilation,
                        bias=norm_layer is None)]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
