"""InstanceFCN heads on a stride-S feature map (S = 8 in the paper).

Shapes: B images; C input channels; (H, W) the feature map; k the number of cells per window
side; k*k instance-sensitive score maps.

Paper (Sec. 3-4): on the stride-8 conv5 features, the instance branch is a 1x1 conv (512) +
ReLU then a 3x3 conv to k*k maps; the objectness branch is a 3x3 conv (512) + ReLU then a 1x1
conv to one map. Objectness at feature cell (y, x) scores the m x m window CENTRED on (y, x)
(m odd, 21 in the paper); :func:`insplug.core.position_sensitive.assemble_windows` builds its
mask from the k*k maps.
"""
from typing import Tuple

import torch.nn as nn
from torch import Tensor


class InstanceFCNHead(nn.Module):
    """Instance-sensitive score maps and objectness.

    Args:
        in_channels: C.
        feat_channels: width of both branches' hidden conv (512).
        k: cells per window side (5 in the paper's experiments).
        window: m, window side in feature cells (21).
    """

    def __init__(self, in_channels: int, feat_channels: int = 512, k: int = 5,
                 window: int = 21):
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f'window must be odd (windows are centred on cells), got {window}')
        self.k, self.window = k, window
        self.inst_conv = nn.Conv2d(in_channels, feat_channels, 1)
        self.inst_out = nn.Conv2d(feat_channels, k * k, 3, padding=1)
        self.obj_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.obj_out = nn.Conv2d(feat_channels, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        for m in (self.inst_conv, self.inst_out, self.obj_conv, self.obj_out):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """x (B, C, H, W) -> inst (B, k*k, H, W) logits, obj (B, H, W) logits."""
        inst = self.inst_out(self.relu(self.inst_conv(x)))
        obj = self.obj_out(self.relu(self.obj_conv(x)))[:, 0]
        return inst, obj
