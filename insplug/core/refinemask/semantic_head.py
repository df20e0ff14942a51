"""RefineMask's semantic branch on the finest FPN level.

Shapes: B images; Cin input channels on an Hf x Wf map (stride 4); Cs semantic channels.

A stack of 3x3 conv + ReLU layers turns the finest feature map into semantic features
(B, Cs, Hf, Wf); a 1x1 conv turns those into a binary foreground logit map (B, Hf, Wf)
supervised by the union of all instance masks.
"""
import torch.nn as nn
import torch.nn.functional as F

from .sfm import init_conv


class SemanticBranch(nn.Module):
    """Args: in_channels Cin, channels Cs, num_convs (official 4)."""

    def __init__(self, in_channels, channels, num_convs=4):
        super().__init__()
        self.convs = nn.ModuleList(
            init_conv(nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1))
            for i in range(num_convs))
        self.logits = init_conv(nn.Conv2d(channels if num_convs else in_channels, 1, 1))

    def forward(self, x):
        """(B, Cin, Hf, Wf) -> features (B, Cs, Hf, Wf), foreground logits (B, Hf, Wf)."""
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        return x, self.logits(x)[:, 0]
