"""FCIS head (Li et al., CVPR 2017; release msracver/FCIS, ``resnet_v1_101_fcis.py``).

Shapes: B images, a C5 feature (B, D, H, W) at stride 16; K = C + 1 classes with background
at index 0 (the release's layout); G x G position-sensitive groups (G = 7); R RoIs
(R, 5) = batch index, x1, y1, x2, y2; each RoI is pooled into P x P (P = 21) cells.

* ``conv_new_1`` (1x1, 1024) + ReLU, then ``fcis_cls_seg`` (1x1, G^2 * 2K: inside/outside
  score maps, channel ``((k * 2 + io) * G + gy) * G + gx``) and ``fcis_bbox``
  (1x1, G^2 * 4 * K_reg, class-agnostic K_reg = 2);
* PS RoI pooling (MXNet convention) to (R, 2K, P, P) and (R, 4 K_reg, P, P);
* classification: max over inside/outside per cell, average over the P x P cells -> (R, K);
* mask: the inside/outside pair of one class, softmax over the pair per cell;
* boxes: average of the pooled box maps -> (R, 4 K_reg).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from insplug.core.position_sensitive import ps_roi_pool


def fcis_roi_outputs(cls_seg_map: Tensor, bbox_map: Tensor, rois: Tensor, num_classes: int,
                     num_reg_classes: int = 2, group_size: int = 7, pooled_size: int = 21,
                     spatial_scale: float = 1 / 16):
    """Pool the score maps for each RoI and form the three outputs.

    Args:
        cls_seg_map: (B, G^2 * 2K, H, W).
        bbox_map: (B, G^2 * 4 K_reg, H, W).
        rois: (R, 5).
        num_classes: K (with background).

    Returns:
        cls_score (R, K) logits; seg_logits (R, K, 2, P, P) (index 1 = inside);
        bbox_pred (R, 4 K_reg).
    """
    pooled = ps_roi_pool(cls_seg_map, rois, 2 * num_classes, group_size, pooled_size,
                         spatial_scale)
    seg_logits = pooled.view(-1, num_classes, 2, pooled_size, pooled_size)
    cls_score = seg_logits.max(2).values.mean((2, 3))
    box = ps_roi_pool(bbox_map, rois, 4 * num_reg_classes, group_size, pooled_size,
                      spatial_scale)
    return cls_score, seg_logits, box.mean((2, 3))


def pick_class(seg_logits: Tensor, classes: Tensor) -> Tensor:
    """The inside/outside pair of one class per RoI (``ChannelOperator Group_Pick``).

    Args:
        seg_logits: (R, K, 2, P, P); classes: (R,) int64 in [0, K).

    Returns:
        (R, 2, P, P).
    """
    idx = torch.arange(seg_logits.shape[0], device=seg_logits.device)
    return seg_logits[idx, classes.clamp(min=0)]


def inference_probs(cls_score: Tensor, seg_logits: Tensor):
    """Test-time class probabilities and inside probabilities of the arg-max class
    (background included, as ``Score_Pick`` on ``cls_prob`` does in the release).

    Args:
        cls_score: (R, K); seg_logits: (R, K, 2, P, P).

    Returns:
        cls_prob (R, K); mask_prob (R, P, P).
    """
    cls_prob = F.softmax(cls_score, 1)
    pair = pick_class(seg_logits, cls_prob.argmax(1))
    return cls_prob, F.softmax(pair, 1)[:, 1]


class FCISHeadNet(nn.Module):
    """``conv_new_1`` + ReLU, ``fcis_cls_seg`` and ``fcis_bbox`` (release names), weights
    N(0, 0.01), biases 0 (``init_weight``).

    Args:
        in_channels: D (2048 for ResNet-101 C5).
        num_classes: K, background included.
        mid_channels: 1024 in the release.
        group_size: G.
        num_reg_classes: 2 (class-agnostic: background + foreground), or K.
    """

    def __init__(self, in_channels: int, num_classes: int, mid_channels: int = 1024,
                 group_size: int = 7, num_reg_classes: int = 2):
        super().__init__()
        # K with background: not named num_classes (mmdet's NumClassCheckHook compares every
        # module's num_classes with the dataset's foreground class count)
        self.num_scores = num_classes
        self.group_size = group_size
        self.num_reg_classes = num_reg_classes
        self.conv_new_1 = nn.Conv2d(in_channels, mid_channels, 1)
        self.fcis_cls_seg = nn.Conv2d(mid_channels, group_size ** 2 * 2 * num_classes, 1)
        self.fcis_bbox = nn.Conv2d(mid_channels, group_size ** 2 * 4 * num_reg_classes, 1)
        for conv in (self.conv_new_1, self.fcis_cls_seg, self.fcis_bbox):
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feat: Tensor):
        """(B, D, H, W) -> cls_seg_map (B, G^2 2K, H, W), bbox_map (B, G^2 4 K_reg, H, W)."""
        x = F.relu(self.conv_new_1(feat))
        return self.fcis_cls_seg(x), self.fcis_bbox(x)
