"""PolarMask's head network (the release's ``PolarMask_Head`` layers), framework-free.

Shape shorthand: B images, C channels, L levels, (H_l, W_l) level sizes, K classes, R rays.

Three towers of ``num_convs`` conv3x3 (no bias) - GroupNorm - ReLU on every FPN level: the class
tower feeds the class logits and the centerness logit (the release puts centerness on the class
tower), the box tower the four distances ``exp(scale_l * conv)``, the mask tower the R ray
lengths ``exp(scale_mask_l * conv)``. Module names are mmdet's (``cls_convs.{i}.conv`` /
``.gn``, ``conv_cls``, ``conv_reg``, ``conv_centerness``, ``conv_rays``, ``scales.{l}.scale``,
``scales_mask.{l}.scale`` of shape ()), so the mmdet adapter's state_dict (``bbox_head.*``)
loads as it is; rays are in insplug's order (see :mod:`insplug.core.polarmask.targets`).
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ['PolarMaskHeadNet']


class _ConvGNReLU(nn.Module):
    """conv3x3 (bias only without norm) - GroupNorm - ReLU, named ``conv`` / ``gn``."""

    def __init__(self, cin: int, cout: int, norm_groups: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=norm_groups <= 0)
        self.gn = nn.GroupNorm(norm_groups, cout) if norm_groups > 0 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return self.act(x)


class _Scale(nn.Module):
    """Learnable scalar of shape () (mmcv's / mmdet 1.x's ``Scale``)."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class PolarMaskHeadNet(nn.Module):
    """L maps (B, C, H_l, W_l) -> per-level lists of class logits (B, K, H_l, W_l), box
    distances (B, 4, H_l, W_l) in pixels, centerness logits (B, 1, H_l, W_l) and ray lengths
    (B, R, H_l, W_l) in pixels.

    Args:
        in_channels: C. num_classes: K. feat_channels: tower width (C).
        num_convs: convs per tower (4). num_levels: L (5). num_rays: R (36).
        norm_groups: GroupNorm groups (32; <= 0: biased convs without norm).
        prior_prob: class-bias prior (0.01).
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 80, feat_channels: int = 256,
                 num_convs: int = 4, num_levels: int = 5, num_rays: int = 36,
                 norm_groups: int = 32, prior_prob: float = 0.01):
        super().__init__()
        self.num_classes, self.num_rays = num_classes, num_rays
        for name in ('cls_convs', 'reg_convs', 'mask_convs'):
            self.add_module(name, nn.ModuleList(
                _ConvGNReLU(in_channels if i == 0 else feat_channels, feat_channels, norm_groups)
                for i in range(num_convs)))
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.conv_rays = nn.Conv2d(feat_channels, num_rays, 3, padding=1)
        self.scales = nn.ModuleList(_Scale() for _ in range(num_levels))
        self.scales_mask = nn.ModuleList(_Scale() for _ in range(num_levels))
        for m in self.modules():  # the release: normal(0, 0.01), bias 0; class prior bias
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    @staticmethod
    def _tower(convs, x):
        for conv in convs:
            x = conv(x)
        return x

    def forward_level(self, x: Tensor, level: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """One level (B, C, H, W) -> cls (B, K, H, W), box (B, 4, H, W), ctr (B, 1, H, W),
        rays (B, R, H, W)."""
        cls_feat = self._tower(self.cls_convs, x)
        reg_feat = self._tower(self.reg_convs, x)
        mask_feat = self._tower(self.mask_convs, x)
        box = self.scales[level](self.conv_reg(reg_feat)).float().exp()
        rays = self.scales_mask[level](self.conv_rays(mask_feat)).float().exp()
        return self.conv_cls(cls_feat), box, self.conv_centerness(cls_feat), rays

    def forward(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        outs = [self.forward_level(x, i) for i, x in enumerate(feats)]
        return tuple(list(o) for o in zip(*outs))
