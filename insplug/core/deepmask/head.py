"""DeepMask heads and the SharpMask top-down refinement, written as convolutions so the same
weights run on one training window or densely on a whole (padded) image.

Shapes: B windows or images; F the window's feature side (``fSz = iSz / 16``, 10 in the
release); O the mask side (``oSz``, 56); E the embedding width (512); K selected windows;
km / ks the refinement widths (32 / 32 in the release).

From ``DeepMask.lua`` (release):

* trunk extras: layer3 (cropped by 1 px on each side in training), 1x1 conv 1024 -> 128, ReLU,
  flatten, Linear(128 F F -> 512) (here a F x F convolution: the release's ``linear2convTrunk``
  does the same at inference), *no* non-linearity after it;
* mask branch: Linear(512 -> O^2) (a 1x1 convolution), read row-major as O x O; in training
  upsampled bilinearly (align-corners) to the label side ``gSz`` (112);
* score branch: Dropout(.5), Linear(512 -> 1024), Threshold(0, 1e-6) (ReLU at inference:
  ``linear2convHead``), Dropout(.5), Linear(1024 -> 1).

From ``SharpMask.lua``: ``refs[0]`` = Linear(512 -> km F F) viewed km x F x F; then for skip
i = 1..4 (layer3, layer2, layer1, stem; cropped by 0, 2, 4, 8 px in training) a horizontal net
(3x3 conv C_i -> 64/64/64/32, ReLU, 3x3 conv -> ks/2^(i-1), ReLU, 3x3 conv -> ks/2^i), a vertical
net (3x3 conv km/2^(i-1) -> same, ReLU, 3x3 conv -> km/2^i), sum, ReLU, nearest x2 upsampling;
finally a 3x3 conv km/16 -> 1. Every 3x3 convolution pads symmetrically.
"""
from typing import List, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .trunk import SymmetricPadConv2d


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """3x3 convolution with symmetric padding 1 (the release's ``SpatialSymmetricPadding``)."""
    return SymmetricPadConv2d(cin, cout, 3, 1, 1)


class DeepMaskHead(nn.Module):
    """Trunk extras + mask branch + score branch.

    Args:
        in_channels: layer3 channels (1024 for ResNet-50).
        feat_size: F, the side of the (cropped) layer3 window (``iSz / 16``).
        mask_size: O, the mask branch's side (``oSz``).
        reduce_channels: 128. embed_channels: E = 512. score_channels: 1024.
        dropout: score-branch dropout probability (0.5).
    """

    def __init__(self, in_channels: int = 1024, feat_size: int = 10, mask_size: int = 56,
                 reduce_channels: int = 128, embed_channels: int = 512,
                 score_channels: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.feat_size, self.mask_size = feat_size, mask_size
        self.reduce = nn.Conv2d(in_channels, reduce_channels, 1)
        self.embed = nn.Conv2d(reduce_channels, embed_channels, feat_size)
        self.mask = nn.Conv2d(embed_channels, mask_size * mask_size, 1)
        self.score_fc1 = nn.Conv2d(embed_channels, score_channels, 1)
        self.score_fc2 = nn.Conv2d(score_channels, 1, 1)
        self.dropout = nn.Dropout(dropout)

    def embedding(self, layer3: Tensor) -> Tensor:
        """layer3: (B, C, h + F - 1, w + F - 1) -> (B, E, h, w): one embedding per F x F window."""
        return self.embed(F.relu(self.reduce(layer3)))

    def score_logits(self, emb: Tensor) -> Tensor:
        """emb: (B, E, h, w) -> (B, h, w) objectness logits."""
        hidden = self.score_fc1(self.dropout(emb))
        # training: Threshold(0, 1e-6); inference: ReLU (release: linear2convHead)
        hidden = F.threshold(hidden, 0.0, 1e-6) if self.training else F.relu(hidden)
        return self.score_fc2(self.dropout(hidden))[:, 0]

    def mask_logits(self, emb: Tensor) -> Tensor:
        """emb: (K, E) window embeddings -> (K, O, O) mask logits (row-major, as the release)."""
        weight = self.mask.weight.flatten(1)
        return F.linear(emb, weight, self.mask.bias).view(-1, self.mask_size, self.mask_size)


class SharpMaskRefinement(nn.Module):
    """SharpMask's top-down refinement (4 modules).

    Args:
        skip_channels: channels of (layer3, layer2, layer1, stem), e.g. (1024, 512, 256, 64).
        feat_size: F. embed_channels: E. km, ks: 32, 32 (multiples of 16, km == ks).
        hidden: first horizontal widths, (64, 64, 64, 32) in the release.
        crops: training crops of each skip map, (0, 2, 4, 8) (layer3 comes already cropped by 1).
    """

    def __init__(self, skip_channels: Sequence[int] = (1024, 512, 256, 64), feat_size: int = 10,
                 embed_channels: int = 512, km: int = 32, ks: int = 32,
                 hidden: Sequence[int] = (64, 64, 64, 32), crops: Sequence[int] = (0, 2, 4, 8)):
        super().__init__()
        if km != ks or km < 16 or km % 16:
            raise ValueError(f'km and ks must be equal multiples of 16, got {km}, {ks}')
        self.feat_size, self.km, self.crops = feat_size, km, tuple(crops)
        self.v0 = nn.Linear(embed_channels, feat_size * feat_size * km)
        self.vertical = nn.ModuleList()
        self.horizontal = nn.ModuleList()
        for i, (cin, nh) in enumerate(zip(skip_channels, hidden)):
            nv, ns = km // 2 ** i, ks // 2 ** i
            self.vertical.append(nn.Sequential(conv3x3(nv, nv), nn.ReLU(), conv3x3(nv, nv // 2)))
            self.horizontal.append(nn.Sequential(conv3x3(cin, nh), nn.ReLU(), conv3x3(nh, ns),
                                                 nn.ReLU(), conv3x3(ns, ns // 2)))
        self.final = conv3x3(km // 2 ** len(skip_channels), 1)

    def horizontal_maps(self, skips: Sequence[Tensor], crop: bool) -> List[Tensor]:
        """Apply the horizontal nets.

        Args:
            skips: (layer3, layer2, layer1, stem), each (B, C_i, h_i, w_i); layer3 already
                cropped by 1 in training.
            crop: crop each map by ``crops[i]`` first (training windows); False densely.

        Returns:
            list of 4 tensors (B, ks / 2^(i+1), h_i', w_i').
        """
        out = []
        for net, x, c in zip(self.horizontal, skips, self.crops):
            if crop and c:
                x = x[..., c:-c, c:-c]
            out.append(net(x))
        return out

    def forward(self, emb: Tensor, hmaps: Sequence[Tensor]) -> Tensor:
        """Top-down pass.

        Args:
            emb: (K, E) window embeddings.
            hmaps: 4 tensors (K, ks / 2^(i+1), F 2^i, F 2^i), the horizontal outputs of each
                window (i = 0..3).

        Returns:
            (K, 16 F, 16 F) refined mask logits.
        """
        x = self.v0(emb).view(-1, self.km, self.feat_size, self.feat_size)
        for vnet, h in zip(self.vertical, hmaps):
            x = F.interpolate(F.relu(h + vnet(x)), scale_factor=2, mode='nearest')
        return self.final(x)[:, 0]
