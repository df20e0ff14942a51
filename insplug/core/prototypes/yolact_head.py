"""YOLACT's shared prediction head and its priors (dbolya/yolact ``PredictionModule`` with
``extra_head_net=[(256, 3)]``, ``share_prediction_module=True``; the layers of mmdet's
``YOLACTHead``), framework-free.

Shapes: B images, L levels with (h_l, w_l) maps of C channels, A priors per location
(scales per level x aspect ratios), K foreground classes (+1 background, last), k prototypes.

    per level: num_head_convs x (conv3x3 -> ReLU) -> conv3x3 class (A (K + 1)), box (A 4),
    coefficient (A k, tanh) maps

Priors come from :func:`insplug.core.prototypes.yolact.make_priors` with this module's
``prior_scales`` / ``prior_ratios`` / ``prior_max_size`` / ``square_anchors`` (defaults: the
release's YOLACT; YOLACT++ uses three scales per octave and ``square_anchors=False``).
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from insplug.core.prototypes.yolact import make_priors

__all__ = ['YolactPredictionHead', 'flatten_levels']


def flatten_levels(preds: Sequence[Tensor], channels: int) -> Tensor:
    """Per-level (B, A * c, h_l, w_l) maps -> (B, P, c), P = sum_l h_l w_l A, location-major
    then prior (the release's and mmdet's order)."""
    b = preds[0].size(0)
    return torch.cat([p.permute(0, 2, 3, 1).reshape(b, -1, channels) for p in preds], 1)


class YolactPredictionHead(nn.Module):
    """Args:
        num_classes: K.
        in_channels: C of every level.
        feat_channels: width of the shared convs (256).
        num_head_convs: shared conv3x3 + ReLU layers (1).
        num_protos: k (32).
        prior_scales: per level the scales in pixels of a ``prior_max_size`` input.
        prior_ratios: aspect ratios.
        prior_max_size: 550.
        square_anchors: YOLACT's ``use_square_anchors`` (True), YOLACT++ False.

    Parameters: ``head_convs.{i}`` (conv with bias), ``conv_cls``, ``conv_reg``, ``conv_coeff``;
    Xavier-uniform weights, zero biases (the release's init).

    Forward: list of L (B, C, h_l, w_l) -> ``cls`` (B, P, K + 1) logits, ``loc`` (B, P, 4),
    ``coeff`` (B, P, k) in (-1, 1).
    """

    def __init__(self, num_classes: int, in_channels: int = 256, feat_channels: int = 256,
                 num_head_convs: int = 1, num_protos: int = 32,
                 prior_scales: Sequence[Sequence[float]] = ((24,), (48,), (96,), (192,), (384,)),
                 prior_ratios: Sequence[float] = (1.0, 0.5, 2.0), prior_max_size: float = 550,
                 square_anchors: bool = True):
        super().__init__()
        counts = {len(s) for s in prior_scales}
        if len(counts) != 1:
            raise ValueError(f'every level needs the same number of prior scales, got '
                             f'{prior_scales}')
        self.num_classes = num_classes
        self.num_protos = num_protos
        self.num_priors = counts.pop() * len(prior_ratios)
        self.prior_scales = [list(s) for s in prior_scales]
        self.prior_ratios = list(prior_ratios)
        self.prior_max_size = prior_max_size
        self.square_anchors = square_anchors
        self.head_convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1)
            for i in range(num_head_convs))
        width = feat_channels if num_head_convs else in_channels
        a = self.num_priors
        self.conv_cls = nn.Conv2d(width, a * (num_classes + 1), 3, padding=1)
        self.conv_reg = nn.Conv2d(width, a * 4, 3, padding=1)
        self.conv_coeff = nn.Conv2d(width, a * num_protos, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def priors(self, feat_sizes: Sequence[Tuple[int, int]], device=None,
               dtype=torch.float32) -> Tensor:
        """(P, 4) relative centre-size priors for these (h_l, w_l)."""
        return make_priors(feat_sizes, self.prior_scales, self.prior_ratios,
                           self.prior_max_size, self.square_anchors, device, dtype)

    def forward_levels(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor],
                                                               List[Tensor]]:
        """Per-level maps (class, box, tanh'd coefficients), as mmdet's ``YOLACTHead``."""
        cls, loc, coeff = [], [], []
        for x in feats:
            for conv in self.head_convs:
                x = torch.relu(conv(x))
            cls.append(self.conv_cls(x))
            loc.append(self.conv_reg(x))
            coeff.append(torch.tanh(self.conv_coeff(x)))
        return cls, loc, coeff

    def forward(self, feats: Sequence[Tensor]):
        cls, loc, coeff = self.forward_levels(feats)
        return dict(cls=flatten_levels(cls, self.num_classes + 1), loc=flatten_levels(loc, 4),
                    coeff=flatten_levels(coeff, self.num_protos))
