"""YOLACT's FPN (dbolya/yolact ``yolact.FPN`` with ``yolact_base_config``'s ``fpn``).

Shapes: B images, L input levels (C3-C5), C_l their channels, F output channels, E extra levels.

    lateral 1x1 convs, top-down sum with bilinear resize (align_corners=False)
    -> 3x3 "pred" convs (padding 1) -> ReLU (``relu_pred_layers``, which mmdet's FPN lacks)
    -> E stride-2 3x3 convs, each on the previous output (P6 from the ReLU'd P5, P7 from P6),
       no ReLU (``relu_downsample_layers=False``).

Output: L + E maps (B, F, H_l, W_l), finest first.
"""
from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['YolactFPNModule']


class YolactFPNModule(nn.Module):
    """Args:
        in_channels: C_l of the inputs, finest first.
        out_channels: F (256).
        num_extra: E stride-2 convs (2: P6, P7).
        relu_pred_layers: ReLU after the 3x3 convs (True in the release).
        relu_extra: ReLU on the extra levels (False in the release's configs).

    Parameters: ``lateral_convs.i`` / ``fpn_convs.i`` for input level i (finest first; the
    release stores them coarsest first), ``downsample_convs.j``. Xavier-uniform init, zero bias.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_extra: int = 2,
                 relu_pred_layers: bool = True, relu_extra: bool = False):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                       for _ in in_channels)
        self.downsample_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, stride=2)
            for _ in range(num_extra))
        self.relu_pred_layers = relu_pred_layers
        self.relu_extra = relu_extra
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        n = len(self.lateral_convs)
        feats = list(feats)[-n:]
        outs = [None] * n
        x = None
        for i in range(n - 1, -1, -1):
            lat = self.lateral_convs[i](feats[i])
            if x is not None:
                x = F.interpolate(x, size=lat.shape[-2:], mode='bilinear', align_corners=False)
                x = x + lat
            else:
                x = lat
            outs[i] = x
        outs = [self.fpn_convs[i](outs[i]) for i in range(n)]
        if self.relu_pred_layers:
            outs = [F.relu(o) for o in outs]
        for conv in self.downsample_convs:
            outs.append(conv(outs[-1]))
        if self.relu_extra:
            outs = outs[:n] + [F.relu(o) for o in outs[n:]]
        return outs
