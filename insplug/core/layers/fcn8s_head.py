"""FCN-8s skip head (Long, Shelhamer & Darrell, CVPR 2015; official shelhamer/fcn.berkeleyvision.org
``voc-fcn8s``).

Shapes: B images, three maps at strides 8, 16, 32 (pool3, pool4 and fc7 of VGG-16 in the
paper) with C_8, C_16, C_32 channels, K output channels (classes, or features when used as a
neck), H x W the stride-8 map.

``score_fr`` (1x1 on the stride-32 map) is upsampled x2 by a 4x4/2 transposed conv
(``upscore2``, bilinear-initialised), cropped to the stride-16 map and added to ``score_pool4``
(1x1 on it); the sum is upsampled x2 again (``upscore_pool4``), cropped and added to
``score_pool3``; ``upscore8`` (16x16/8 transposed conv) brings it to the input resolution,
cropped to ``out_size``. The release's 100-px input padding makes its crops offset 5, 9 and 31;
without it the maps are aligned at offset 0 (here; a transposed conv with padding k/4 keeps
the centres aligned). The "all-at-once" variant scales pool4 by 0.01 and pool3 by 1e-4
(``skip_scales``); the staged FCN-8s (default) does not.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """(channels, channels, k, k) per-channel bilinear upsampling weights (the release's
    ``surgery.interp``: ``upsample_filt`` on the diagonal, zero elsewhere)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = (1 - (og - center).abs() / factor)
    filt = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt
    return weight.float()


def _crop(x: Tensor, size) -> Tensor:
    """Top-left crop (offset 0) of (B, C, h, w) to (B, C, *size); pads with zeros if smaller."""
    h, w = size
    if x.shape[-2] < h or x.shape[-1] < w:
        x = nn.functional.pad(x, (0, max(w - x.shape[-1], 0), 0, max(h - x.shape[-2], 0)))
    return x[..., :h, :w]


class FCN8sHead(nn.Module):
    """(stride-8, stride-16, stride-32 maps) -> (B, K, *out_size) or (B, K, 8 H, 8 W).

    Args:
        in_channels: (C_8, C_16, C_32) (VGG-16: 256, 512, 4096 after fc7).
        num_classes: K.
        skip_scales: multipliers of the pool4 / pool3 skips ((1, 1); all-at-once (0.01, 1e-4)).
        upsample_final: apply ``upscore8`` (False: return the stride-8 fused scores).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int,
                 skip_scales: Sequence[float] = (1.0, 1.0), upsample_final: bool = True):
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f'FCN8sHead needs three maps (strides 8, 16, 32), got '
                             f'{len(in_channels)} in_channels')
        self.in_channels, self.out_channels = tuple(in_channels), num_classes
        self.skip_scales = tuple(float(s) for s in skip_scales)
        self.score_pool3 = nn.Conv2d(in_channels[0], num_classes, 1)
        self.score_pool4 = nn.Conv2d(in_channels[1], num_classes, 1)
        self.score_fr = nn.Conv2d(in_channels[2], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, padding=1,
                                                bias=False)
        self.upscore8 = (nn.ConvTranspose2d(num_classes, num_classes, 16, 8, padding=4,
                                            bias=False) if upsample_final else None)
        for up in (self.upscore2, self.upscore_pool4, self.upscore8):
            if up is not None:
                with torch.no_grad():
                    up.weight.copy_(bilinear_kernel(num_classes, up.kernel_size[0]))
        for conv in (self.score_pool3, self.score_pool4, self.score_fr):
            nn.init.zeros_(conv.weight)  # the release zero-initialises the score layers
            nn.init.zeros_(conv.bias)

    def forward(self, feats: Sequence[Tensor], out_size: Optional[Sequence[int]] = None) -> Tensor:
        """(B, C_8, H, W), (B, C_16, ~H/2, ~W/2), (B, C_32, ~H/4, ~W/4) -> (B, K, out)."""
        if len(feats) != 3:
            raise ValueError(f'FCN8sHead expects three maps, got {len(feats)}')
        pool3, pool4, fc7 = feats
        x = _crop(self.upscore2(self.score_fr(fc7)), pool4.shape[-2:])
        x = x + self.skip_scales[0] * self.score_pool4(pool4)
        x = _crop(self.upscore_pool4(x), pool3.shape[-2:])
        x = x + self.skip_scales[1] * self.score_pool3(pool3)
        if self.upscore8 is None:
            return x
        size = out_size if out_size is not None else (8 * x.shape[-2], 8 * x.shape[-1])
        return _crop(self.upscore8(x), size)
