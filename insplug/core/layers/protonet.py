"""Prototype (basis) encoder: YOLACT's protonet, and BlendMask's bottom module as its
multi-level variant.

Shapes: B images, C input channels, L input levels (level 0 the finest, e.g. P3 at stride 8),
F hidden channels, k prototypes; H0 x W0 the size of level 0; the output is at
(u * H0) x (u * W0) with upsampling factor u (2: stride 4 from P3).

Layout (YOLACT, Bolya et al. 2019, Fig. 3; BlendMask, Chen et al. 2020, Sec. 3.2):

    [levels 1..L-1: conv3x3 -> bilinear resize to level 0, summed with level 0's conv3x3]
    -> num_convs x (conv3x3 -> ReLU) -> x u bilinear upsample -> conv3x3 -> ReLU
    -> conv1x1 to k prototypes -> optional ReLU (YOLACT keeps the prototypes non-negative)

YOLACT: L = 1 (P3), no per-level conv, F = 256, k = 32, no norm, final ReLU.
BlendMask: L = 3 (P3-P5), per-level conv, F = 128, k = 4 (bases), BN, no final activation.
"""
from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['ProtoNetEncoder', 'conv_norm_relu']


def conv_norm_relu(in_channels: int, out_channels: int, norm: Optional[str]) -> nn.Sequential:
    """conv3x3 (+ BN or GN(32)) + ReLU; the conv has a bias only without norm."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None)]
    if norm == 'BN':
        layers.append(nn.BatchNorm2d(out_channels))
    elif norm == 'GN':
        layers.append(nn.GroupNorm(32, out_channels))
    elif norm is not None:
        raise ValueError(f"norm must be None, 'BN' or 'GN', got {norm!r}")
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ProtoNetEncoder(nn.Module):
    """Feature pyramid levels -> k prototype maps at u x the finest level's resolution.

    Args:
        in_channels: C, channels of every input level.
        feat_channels: F, hidden width (YOLACT 256, BlendMask 128).
        num_protos: k, number of prototypes/bases (YOLACT 32, BlendMask 4).
        num_convs: 3x3 convs before the upsampling (3 in both papers).
        in_levels: indices of the input levels used, finest first (YOLACT (0,) = P3;
            BlendMask (0, 1, 2) = P3-P5).
        level_convs: apply one conv3x3 per level before summing (BlendMask's "refine");
            required when more than one level is used.
        norm: None, 'BN' or 'GN' after each hidden conv.
        upsample_factor: u (2 in both papers).
        proto_activation: 'relu' (YOLACT) or None (BlendMask's bases are unbounded).
        init: 'xavier' (YOLACT's uniform Xavier) or 'kaiming' (kaiming_uniform a=1, AdelaiDet).

    Forward:
        feats: sequence of (B, C, H_l, W_l) maps (e.g. the FPN outputs).
        returns (B, k, u * H0, u * W0) with level 0 = ``feats[in_levels[0]]``.
    """

    def __init__(self, in_channels: int = 256, feat_channels: int = 256, num_protos: int = 32,
                 num_convs: int = 3, in_levels: Sequence[int] = (0,),
                 level_convs: bool = False, norm: Optional[str] = None,
                 upsample_factor: int = 2, proto_activation: Optional[str] = 'relu',
                 init: str = 'xavier'):
        super().__init__()
        if len(in_levels) == 0:
            raise ValueError('in_levels must name at least one input level')
        if len(in_levels) > 1 and not level_convs:
            raise ValueError('level_convs=True is required to fuse more than one level '
                             f'(in_levels={tuple(in_levels)})')
        if proto_activation not in ('relu', None):
            raise ValueError(f"proto_activation must be 'relu' or None, got {proto_activation!r}")
        self.in_channels = in_channels
        self.num_protos = num_protos
        self.in_levels = tuple(in_levels)
        self.upsample_factor = upsample_factor
        self.proto_activation = proto_activation
        self.level_convs = nn.ModuleList(
            conv_norm_relu(in_channels, feat_channels, norm) for _ in in_levels) \
            if level_convs else None
        width = feat_channels if level_convs else in_channels
        self.convs = nn.Sequential(*[conv_norm_relu(width if i == 0 else feat_channels,
                                                    feat_channels, norm)
                                     for i in range(num_convs)])
        self.post_upsample = conv_norm_relu(feat_channels if num_convs else width,
                                            feat_channels, norm)
        self.proto_conv = nn.Conv2d(feat_channels, num_protos, 1)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        if init not in ('xavier', 'kaiming'):
            raise ValueError(f"init must be 'xavier' or 'kaiming', got {init!r}")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if init == 'xavier':
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def fuse_levels(self, feats: Sequence[Tensor]) -> Tensor:
        """Selected levels -> one (B, F or C, H0, W0) map (sum after per-level convs)."""
        if len(feats) <= max(self.in_levels):
            raise ValueError(f'ProtoNetEncoder got {len(feats)} feature levels but in_levels='
                             f'{self.in_levels}')
        x = feats[self.in_levels[0]]
        if self.level_convs is None:
            return x
        x = self.level_convs[0](x)
        for conv, level in zip(self.level_convs[1:], self.in_levels[1:]):
            y = conv(feats[level])
            x = x + F.interpolate(y, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return x

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if isinstance(feats, Tensor):
            feats = (feats,)
        x = self.convs(self.fuse_levels(feats))
        x = F.interpolate(x, scale_factor=self.upsample_factor, mode='bilinear',
                          align_corners=False)
        protos = self.proto_conv(self.post_upsample(x))
        return F.relu(protos) if self.proto_activation == 'relu' else protos
