"""YOLACT++ fast mask re-scoring: a tiny conv net regressing the IoU of each predicted mask
with its ground truth, used to rescale the classification score at test time.

Shapes: N instances, K classes, H x W mask grid (YOLACT++: the cropped prototype-resolution
masks, 138 x 138 at 550 px input).

YOLACT++ (Bolya et al. 2020, Sec. 3.2): six convs with ReLU -- 3x3 stride 2 with 8, 16, 32,
64, 128 channels, then a 1x1 conv to K outputs -- and a global max pool; no FC layers and no
image features. Training target: IoU of the binarised (> 0.5) predicted mask with its GT mask
(:func:`insplug.core.losses.mask_iou.mask_iou_targets`), regression loss weight 25. At test
time the *mask* score of class c becomes ``score * iou_pred[c]`` (no clamp); the box keeps its
score (``rescore_bbox=False`` in the release's configs).
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['FastMaskIoUNet', 'gather_class_iou', 'rescore']


class FastMaskIoUNet(nn.Module):
    """(N, 1, H, W) mask probabilities -> (N, K) predicted mask IoU per class.

    Masks smaller than the stack's minimum input (63 px for five stride-2 convs) are bilinearly
    upsampled to it first (YOLACT++'s 138 x 138 masks never are).

    Initialised as the release initialises every non-backbone conv (``Yolact.init_weights``):
    Xavier-uniform weights, zero biases. It matters because the last conv is followed by a
    ReLU: with PyTorch's default init (random biases) and one class, its single output channel
    was negative at every position of every mask at initialisation in 23 of 40 seeds (cropped
    blob masks on a 128 x 128 grid), so the net got a zero gradient for good and scored every
    mask 0; with the release's init, in none of the 40 (tests/core/test_mask_rescoring.py).

    Args:
        num_classes: K.
        channels: widths of the stride-2 3x3 convs (YOLACT++: 8, 16, 32, 64, 128).
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = (8, 16, 32, 64, 128)):
        super().__init__()
        layers, width = [], 1
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, stride=2), nn.ReLU(inplace=True)]
            width = c
        layers += [nn.Conv2d(width, num_classes, 1), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.num_classes = num_classes
        self.min_size = 2 ** (len(channels) + 1) - 1  # smallest input that stays >= 1 px

    def forward(self, masks: Tensor) -> Tensor:
        if masks.dim() == 3:
            masks = masks[:, None]
        h, w = masks.shape[-2:]
        if min(h, w) < self.min_size:  # too small for the stride-2 stack: upsample first
            scale = self.min_size / min(h, w)
            size = (max(self.min_size, round(h * scale)), max(self.min_size, round(w * scale)))
            masks = F.interpolate(masks, size=size, mode='bilinear', align_corners=False)
        x = self.net(masks)
        return torch.amax(x, dim=(2, 3))


def gather_class_iou(iou_pred: Tensor, labels: Tensor) -> Tensor:
    """Pick each instance's predicted IoU at its class.

    Args:
        iou_pred: (N, K) per-class predictions.
        labels: (N,) int class indices in [0, K).

    Returns:
        (N,) predicted IoU.
    """
    return iou_pred.gather(1, labels.long()[:, None])[:, 0]


def rescore(scores: Tensor, iou_pred: Tensor) -> Tensor:
    """(N,) scores x (N,) predicted mask IoU clamped to [0, 1]. The release does *not* clamp
    and rescores only the mask score (``ProtoMaskHead`` does that inline); kept for other users."""
    return scores * iou_pred.clamp(0.0, 1.0)
