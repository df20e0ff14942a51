"""BlendMask's auxiliary semantic head on P3 (training only).

Shapes: B images, C input channels, F hidden channels (128), K classes; P3 grid h x w.
Two conv3x3 + BN + ReLU, then a 1x1 conv to K + 1 logits (background first).
"""
from torch import Tensor, nn

__all__ = ['SemanticHead']


class SemanticHead(nn.Module):
    """(B, C, h, w) -> (B, K + 1, h, w) logits.

    Args:
        in_channels: C.
        num_classes: K (thing classes; the background logit is added).
        feat_channels: F (BlendMask: the bottom module's width, 128).
    """

    def __init__(self, in_channels: int, num_classes: int, feat_channels: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(feat_channels), nn.ReLU(inplace=True),
            nn.Conv2d(feat_channels, feat_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(feat_channels), nn.ReLU(inplace=True),
            nn.Conv2d(feat_channels, num_classes + 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
