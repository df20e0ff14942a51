"""Semantic Fusion Module (SFM) stages of RefineMask.

Shapes: N RoIs; C instance channels entering a stage (256, 128, 64 in the official model);
S the stage's input side (14, 28, 56); B images; Cs semantic channels on a Hf x Wf map of
stride ``semantic_stride``; K mask classes of the stage (num_classes, or 1 if class-agnostic).

One stage takes the RoI's instance features (N, C, S, S) and
1. predicts the stage's mask logits (N, S, S) from them (1x1 conv, the RoI's class channel);
2. RoI-aligns the image's semantic features (after a 1x1 conv to C) to S x S, then 1x1 conv;
3. RoI-aligns the image's semantic foreground probability to S x S;
4. concatenates [instance feats, RoI semantic feats, mask probability, RoI semantic mask]
   (2C + 2 channels), reduces to C (1x1), fuses with a multi-branch dilated block, reduces to
   C / 2 - 2 channels, upsamples x2 (bilinear) and appends the two masks again at 2S,
giving (N, C / 2, 2S, 2S) for the next stage.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align


def init_conv(conv):
    """Kaiming-normal (fan_out, ReLU) weights and zero bias, as in the official release."""
    nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def select_class(logits, labels):
    """Pick each RoI's class channel.

    Args:
        logits: (N, K, S, S). labels: (N,) int64; ignored (channel 0) when K == 1.

    Returns:
        (N, S, S).
    """
    if logits.shape[1] == 1:
        return logits[:, 0]
    return logits[torch.arange(logits.shape[0], device=logits.device), labels]


def class_logits(conv, feats, labels):
    """``select_class(conv(feats), labels)`` from each RoI's class row of the 1x1 classifier
    only: (N, C) @ (N, C, S*S) instead of K full maps of which one is kept.

    Args:
        conv: 1x1 ``nn.Conv2d`` C -> K (K classes, or 1: class-agnostic).
        feats: (N, C, S, S). labels: (N,) int64; ignored when K == 1.

    Returns:
        (N, S, S) logits (equal to the full classifier's channel up to float rounding).
    """
    if conv.out_channels == 1:
        return conv(feats)[:, 0]
    n, c, h, w = feats.shape
    weight = conv.weight[labels].reshape(n, 1, c)  # (N, 1, C)
    out = torch.bmm(weight, feats.reshape(n, c, h * w)).reshape(n, h, w)
    if conv.bias is not None:
        out = out + conv.bias[labels][:, None, None]
    return out


def roi_align_maps(maps, rois, size, stride):
    """RoIAlign (aligned, adaptive sampling) of image maps into S x S windows.

    Args:
        maps: (B, C, Hf, Wf). rois: (N, 5) batch index, x1, y1, x2, y2 in input pixels.
        size: int S. stride: int, input pixels per map pixel.

    Returns:
        (N, C, S, S).
    """
    return roi_align(maps, rois.to(maps.dtype), output_size=(size, size),
                     spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)


class MultiBranchFusion(nn.Module):
    """Sum of parallel 3x3 convs with different dilations (+ ReLU each), then a 1x1 merge.

    (N, C, S, S) -> (N, C, S, S).
    """

    def __init__(self, channels, dilations=(1, 3, 5)):
        super().__init__()
        self.branches = nn.ModuleList(
            init_conv(nn.Conv2d(channels, channels, 3, padding=d, dilation=d))
            for d in dilations)
        self.merge = init_conv(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return self.merge(sum(F.relu(branch(x), inplace=True) for branch in self.branches))


class SFMStage(nn.Module):
    """One RefineMask refinement stage (see the module docstring).

    Args:
        semantic_channels: Cs.
        in_channels: C (must be even and > 4).
        size: S, the side of the incoming instance features.
        mask_classes: K, output channels of the stage's mask classifier.
        semantic_stride: stride of the semantic map in input pixels.
        dilations: dilations of the fusion branches.
    """

    def __init__(self, semantic_channels, in_channels, size, mask_classes,
                 semantic_stride=4, dilations=(1, 3, 5)):
        super().__init__()
        if in_channels % 2 or in_channels // 2 <= 2:
            raise ValueError(f'SFM stage needs an even in_channels > 4, got {in_channels}: '
                             'choose conv_out_channels_instance divisible by 2 ** num_stages')
        self.size = size
        self.semantic_stride = semantic_stride
        self.out_channels = in_channels // 2
        self.mask_logits = init_conv(nn.Conv2d(in_channels, mask_classes, 1))
        self.semantic_in = init_conv(nn.Conv2d(semantic_channels, in_channels, 1))
        self.semantic_out = init_conv(nn.Conv2d(in_channels, in_channels, 1))
        self.reduce = init_conv(nn.Conv2d(2 * in_channels + 2, in_channels, 1))
        self.fusion = MultiBranchFusion(in_channels, dilations)
        self.expand = init_conv(nn.Conv2d(in_channels, self.out_channels - 2, 1))

    def forward(self, instance_feats, semantic_feats, semantic_prob, rois, labels):
        """
        Args:
            instance_feats: (N, C, S, S).
            semantic_feats: (B, Cs, Hf, Wf).
            semantic_prob: (B, 1, Hf, Wf) foreground probability.
            rois: (N, 5) batch index, x1, y1, x2, y2 (input pixels).
            labels: (N,) class of each RoI.

        Returns:
            logits: (N, S, S) this stage's mask logits.
            feats: (N, C / 2, 2S, 2S) instance features of the next stage.
        """
        size = instance_feats.shape[-1]
        logits = class_logits(self.mask_logits, instance_feats, labels)
        mask_prob = logits.sigmoid()[:, None]
        sem = F.relu(self.semantic_in(semantic_feats), inplace=True)
        roi_sem = F.relu(self.semantic_out(roi_align_maps(sem, rois, size, self.semantic_stride)),
                         inplace=True)
        roi_sem_prob = roi_align_maps(semantic_prob, rois, size, self.semantic_stride)
        x = torch.cat([instance_feats, roi_sem, mask_prob, roi_sem_prob], dim=1)
        x = F.relu(self.reduce(x), inplace=True)
        x = F.relu(self.fusion(x), inplace=True)
        x = F.relu(self.expand(x), inplace=True)
        x = F.relu(F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False),
                   inplace=True)
        up = 2 * size
        masks = F.interpolate(torch.cat([mask_prob, roi_sem_prob], dim=1), size=(up, up),
                              mode='bilinear', align_corners=True)
        return logits, torch.cat([x, masks], dim=1)
