"""SOLOv2's two branches (framework-free): the instance branch (category + dynamic kernels on
an S x S grid per level) and the unified mask-feature branch.

Shapes: B images; L levels; C input channels (FPN); F hidden channels; K classes; E mask
feature channels (= kernel length for 1x1 dynamic convolution); S_l grid number of level l;
(h, w) the mask-feature size (stride 4, P2's size).

Layer names follow mmdet 3's ``SOLOV2Head`` / ``MaskFeatModule`` (``cls_convs.i.conv/gn``,
``kernel_convs``, ``conv_cls``, ``conv_kernel``; ``convs_all_levels.i.convj``, ``conv_pred``),
and the forward equals AdelaiDet's ``SOLOv2InsHead`` / ``SOLOv2MaskHead`` (adet/modeling/solov2/
solov2.py) and WXinlong/SOLO's ``SOLOv2Head`` / ``MaskFeatHead``.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def coordinate_features(x: Tensor) -> Tensor:
    """CoordConv channels: x then y, each ``linspace(-1, 1)`` over the width / height.

    Args:
        x: (B, C, H, W).

    Returns:
        (B, 2, H, W) on x's device and dtype.
    """
    b, _, h, w = x.shape
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    y, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([xx, y]).unsqueeze(0).expand(b, -1, -1, -1)


def resize_levels(feats: Sequence[Tensor]) -> List[Tensor]:
    """SOLO's level resizing ("split_feats"): P2 halved to P3's stride, the last level (P6)
    resized to the previous one's size, the rest unchanged (bilinear, align_corners False).

    Args:
        feats: L tensors (B, C, H_l, W_l), finest first.

    Returns:
        L tensors.
    """
    out = []
    for i, x in enumerate(feats):
        if i == 0:
            out.append(F.interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False))
        elif i == len(feats) - 1:
            out.append(F.interpolate(x, size=feats[i - 1].shape[-2:], mode='bilinear',
                                     align_corners=False))
        else:
            out.append(x)
    return out


class ConvNormAct(nn.Module):
    """3x3 (or 1x1) conv, optional GroupNorm(32), ReLU; keys ``conv.*``, ``gn.*`` (as mmcv's
    ConvModule). The conv has a bias only without norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 norm: Optional[str] = 'GN', num_groups: int = 32):
        super().__init__()
        if norm not in ('GN', None):
            raise ValueError(f"norm must be 'GN' or None, got {norm!r}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=kernel_size // 2, bias=norm is None)
        self.gn = nn.GroupNorm(num_groups, out_channels) if norm == 'GN' else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return F.relu(x)


class SOLOv2InstanceBranch(nn.Module):
    """Category and kernel towers applied to every level after :func:`resize_levels`.

    The kernel tower sees the features plus CoordConv channels, both resized to S_l x S_l
    (bilinear); the category tower the same resized map without the coordinates.

    Args:
        in_channels: C. feat_channels: F (official 512). num_classes: K.
        kernel_channels: E * k * k (k the dynamic-conv size, official 1: E = 256).
        num_grids: S per level (official [40, 36, 24, 16, 12]).
        stacked_convs: convs per tower (official 4). norm: 'GN' or None.
        prior_prob: initial foreground probability of ``conv_cls`` (0.01).
    """

    def __init__(self, in_channels: int = 256, feat_channels: int = 512, num_classes: int = 80,
                 kernel_channels: int = 256, num_grids: Sequence[int] = (40, 36, 24, 16, 12),
                 stacked_convs: int = 4, norm: Optional[str] = 'GN', prior_prob: float = 0.01):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.kernel_channels = kernel_channels
        self.num_grids = list(num_grids)
        self.kernel_convs = nn.ModuleList(
            ConvNormAct(in_channels + 2 if i == 0 else feat_channels, feat_channels, 3, norm)
            for i in range(stacked_convs))
        self.cls_convs = nn.ModuleList(
            ConvNormAct(in_channels if i == 0 else feat_channels, feat_channels, 3, norm)
            for i in range(stacked_convs))
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_kernel = nn.Conv2d(feat_channels, kernel_channels, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            feats: L tensors (B, C, H_l, W_l), finest first (P2-P6), not yet resized.

        Returns:
            cls_logits: L tensors (B, K, S_l, S_l); kernels: L tensors (B, E*k*k, S_l, S_l).
        """
        if len(feats) != len(self.num_grids):
            raise ValueError(f'{len(feats)} feature levels for {len(self.num_grids)} grids')
        cls_logits, kernels = [], []
        for x, grid in zip(resize_levels(feats), self.num_grids):
            x = torch.cat([x, coordinate_features(x)], 1)
            x = F.interpolate(x, size=grid, mode='bilinear', align_corners=False)
            cate = x[:, :-2].contiguous()
            k = x.contiguous()
            for conv in self.kernel_convs:
                k = conv(k)
            kernels.append(self.conv_kernel(k))
            for conv in self.cls_convs:
                cate = conv(cate)
            cls_logits.append(self.conv_cls(cate))
        return cls_logits, kernels


class MaskFeatBranch(nn.Module):
    """SOLOv2's unified mask features: level i (P2..P5) goes through max(i, 1) 3x3 convs with
    a x2 bilinear upsampling after each of the i first ones, the coarsest level gets the
    CoordConv channels first; the sum goes through a 1x1 conv + GN + ReLU.

    Args:
        in_channels: C. feat_channels: hidden width (official 128). out_channels: E (256).
        num_levels: levels used (official 4: P2-P5). norm: 'GN' or None.
    """

    def __init__(self, in_channels: int = 256, feat_channels: int = 128,
                 out_channels: int = 256, num_levels: int = 4, norm: Optional[str] = 'GN'):
        super().__init__()
        self.in_channels, self.out_channels, self.num_levels = in_channels, out_channels, num_levels
        self.convs_all_levels = nn.ModuleList()
        for i in range(num_levels):
            level = nn.Sequential()
            if i == 0:
                level.add_module('conv0', ConvNormAct(in_channels, feat_channels, 3, norm))
            for j in range(i):
                chn = (in_channels + 2 if i == num_levels - 1 else in_channels) if j == 0 \
                    else feat_channels
                level.add_module(f'conv{j}', ConvNormAct(chn, feat_channels, 3, norm))
                level.add_module(f'upsample{j}', nn.Upsample(scale_factor=2, mode='bilinear',
                                                             align_corners=False))
            self.convs_all_levels.append(level)
        self.conv_pred = ConvNormAct(feat_channels, out_channels, 1, norm)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """
        Args:
            feats: ``num_levels`` tensors (B, C, H_l, W_l), finest (stride 4) first.

        Returns:
            (B, E, h, w) at the finest level's size.
        """
        if len(feats) != self.num_levels:
            raise ValueError(f'{len(feats)} levels given, {self.num_levels} expected')
        out = self.convs_all_levels[0](feats[0])
        for i in range(1, self.num_levels):
            x = feats[i]
            if i == self.num_levels - 1:
                x = torch.cat([x, coordinate_features(x)], 1)
            out = out + self.convs_all_levels[i](x)
        return self.conv_pred(out)


class SOLOInstanceBranch(nn.Module):
    """SOLO's head (Wang et al., ECCV 2020): category grid and, per level, S_l^2 mask maps
    (vanilla) or S_l column + S_l row maps (decoupled: mask(i, j) = sigmoid(y_i) * sigmoid(x_j)).

    Per level (after :func:`resize_levels`): the mask tower sees the features plus CoordConv
    channels (both, or x / y alone for the two decoupled towers), is upsampled x2 (bilinear),
    then a 1x1 (vanilla) or 3x3 (decoupled) conv gives the maps; the category tower resizes the
    features to S_l x S_l before its ``cls_down_index``-th conv. Layer names as mmdet 3's
    ``SOLOHead`` / ``DecoupledSOLOHead`` (WXinlong/SOLO's ``ins_convs`` / ``solo_ins_list`` /
    ``cate_convs`` / ``solo_cate``).

    Args:
        in_channels: C. feat_channels: F (official 256). num_classes: K.
        num_grids: S per level. stacked_convs: convs per tower (official 7).
        decoupled: decoupled head. norm: 'GN' or None. cls_down_index: 0.
        prior_prob: initial foreground probability of ``conv_cls`` and the mask convs (0.01).
    """

    def __init__(self, in_channels: int = 256, feat_channels: int = 256, num_classes: int = 80,
                 num_grids: Sequence[int] = (40, 36, 24, 16, 12), stacked_convs: int = 7,
                 decoupled: bool = False, norm: Optional[str] = 'GN', cls_down_index: int = 0,
                 prior_prob: float = 0.01):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.num_grids, self.decoupled = list(num_grids), decoupled
        self.cls_down_index = cls_down_index
        extra = 1 if decoupled else 2

        def tower(first):
            return nn.ModuleList(ConvNormAct(first if i == 0 else feat_channels, feat_channels,
                                             3, norm) for i in range(stacked_convs))
        if decoupled:
            self.mask_convs_x = tower(in_channels + extra)
            self.mask_convs_y = tower(in_channels + extra)
            self.conv_mask_list_x = nn.ModuleList(nn.Conv2d(feat_channels, g, 3, padding=1)
                                                  for g in self.num_grids)
            self.conv_mask_list_y = nn.ModuleList(nn.Conv2d(feat_channels, g, 3, padding=1)
                                                  for g in self.num_grids)
        else:
            self.mask_convs = tower(in_channels + extra)
            self.conv_mask_list = nn.ModuleList(nn.Conv2d(feat_channels, g ** 2, 1)
                                                for g in self.num_grids)
        self.cls_convs = tower(in_channels)
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        bias = -math.log((1 - prior_prob) / prior_prob)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        for m in [self.conv_cls] + [c for name in ('conv_mask_list', 'conv_mask_list_x',
                                                   'conv_mask_list_y')
                                    for c in getattr(self, name, [])]:
            nn.init.constant_(m.bias, bias)

    @staticmethod
    def _tower(x: Tensor, convs) -> Tensor:
        for conv in convs:
            x = conv(x)
        return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)

    def forward(self, feats: Sequence[Tensor]):
        """
        Args:
            feats: L tensors (B, C, H_l, W_l), finest first (P2-P6), not yet resized.

        Returns:
            vanilla: (mask logits L x (B, S_l^2, h_l, w_l), cls logits L x (B, K, S_l, S_l));
            decoupled: (x logits L x (B, S_l, h_l, w_l), y logits L x (B, S_l, h_l, w_l),
            cls logits); (h_l, w_l) twice the resized level's size.
        """
        if len(feats) != len(self.num_grids):
            raise ValueError(f'{len(feats)} feature levels for {len(self.num_grids)} grids')
        masks_x, masks_y, cls_logits = [], [], []
        for lvl, x in enumerate(resize_levels(feats)):
            coords = coordinate_features(x)
            if self.decoupled:
                fx = self._tower(torch.cat([x, coords[:, :1]], 1), self.mask_convs_x)
                fy = self._tower(torch.cat([x, coords[:, 1:]], 1), self.mask_convs_y)
                masks_x.append(self.conv_mask_list_x[lvl](fx))
                masks_y.append(self.conv_mask_list_y[lvl](fy))
            else:
                f = self._tower(torch.cat([x, coords], 1), self.mask_convs)
                masks_x.append(self.conv_mask_list[lvl](f))
            cate = x
            for j, conv in enumerate(self.cls_convs):
                if j == self.cls_down_index:
                    cate = F.interpolate(cate, size=self.num_grids[lvl], mode='bilinear',
                                         align_corners=False)
                cate = conv(cate)
            cls_logits.append(self.conv_cls(cate))
        if self.decoupled:
            return masks_x, masks_y, cls_logits
        return masks_x, cls_logits
