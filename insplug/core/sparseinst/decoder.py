"""IAM decoder of SparseInst (paper Sec. 3.2-3.3): instance activation maps -> instances.

Shapes: B images; D input channels (encoder output) at H x W (stride 8); E = D + 2 with the
CoordConv channels; N instances (``num_masks``); G groups; C instance-branch channels;
K classes; Dk mask-kernel channels; s the mask upsampling factor (2: masks at stride 4).

Instance branch: 3x3 convs -> IAM logits (B, G*N, H, W) from one (grouped) 3x3 conv;
each map is turned into weights over the H*W pixels (sigmoid normalised to sum 1, or softmax)
and aggregates the branch features into an instance feature (B, G*N, C). For G-IAM the G
features of one instance are concatenated (B, N, G*C) and passed through a linear + ReLU.
Linear heads give class logits (B, N, K), a mask kernel (B, N, Dk) and an objectness (IoU)
logit (B, N, 1). Mask branch: 3x3 convs + 1x1 projection -> mask features (B, Dk, H, W);
mask logits = kernel x features, upsampled by s: (B, N, s*H, s*W).

Variants (``iam_type``): 'base' (one map per instance, no linear fusion; G must be 1),
'group' (G-IAM, sigmoid) and 'group_softmax' (G-IAM with softmax-normalised maps).
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .init import msra_fill, prior_bias, xavier_fill

IAM_TYPES = ('base', 'group', 'group_softmax')


def release_coordinates(features: Tensor) -> Tensor:
    """CoordConv channels as the release computes them, prepended to the features.

    ``-1 + 2 * i / (n - 1)`` for row / column i of n, computed in float32 (the release builds them
    from an integer ``arange`` in the default dtype) and then cast to the features' dtype; this
    agrees with ``linspace(-1, 1, n)`` up to one float32 ulp, and bit for bit with the release. A
    single row or column (n = 1, where the release divides 0 by 0) gets -1.

    Args:
        features: (B, C, H, W).

    Returns:
        (B, 2 + C, H, W): channel 0 is x (varies along W), channel 1 is y, then the features.
    """
    b, _, h, w = features.shape
    dev = features.device

    def axis(n):
        if n == 1:
            return torch.full((1,), -1.0, device=dev)
        return -1.0 + 2.0 * torch.arange(n, device=dev, dtype=torch.float32) / (n - 1)

    grid_y, grid_x = torch.meshgrid(axis(h), axis(w), indexing='ij')
    coords = torch.stack([grid_x, grid_y]).unsqueeze(0).expand(b, 2, h, w).to(features)
    return torch.cat([coords, features], dim=1)


def activation_weights(iam_logits: Tensor, activation: str = 'sigmoid',
                       softmax_bias: Optional[Tensor] = None) -> Tensor:
    """Turn IAM logits into per-map pixel weights that sum to 1.

    Args:
        iam_logits: (B, N, H*W).
        activation: 'sigmoid' (sigmoid, then divided by its sum, clamped at 1e-6) or 'softmax'.
        softmax_bias: optional scalar tensor added to the logits before the softmax.

    Returns:
        (B, N, H*W) weights.
    """
    if activation == 'sigmoid':
        probs = iam_logits.sigmoid()
        return probs / probs.sum(-1, keepdim=True).clamp(min=1e-6)
    if activation == 'softmax':
        if softmax_bias is not None:
            iam_logits = iam_logits + softmax_bias
        return F.softmax(iam_logits, dim=-1)
    raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")


def aggregate_instance_features(weights: Tensor, features: Tensor) -> Tensor:
    """Weighted sums of the feature map, one per activation map.

    Args:
        weights: (B, N, H*W) pixel weights.
        features: (B, C, H, W).

    Returns:
        (B, N, C) instance features.
    """
    return torch.bmm(weights, features.flatten(2).transpose(1, 2))


def merge_groups(instance_features: Tensor, groups: int) -> Tensor:
    """Concatenate the G group features of each instance.

    Args:
        instance_features: (B, G*N, C), group g occupying rows g*N .. (g+1)*N - 1.
        groups: G.

    Returns:
        (B, N, G*C), the features of instance n ordered by group.
    """
    b, gn, c = instance_features.shape
    if gn % groups:
        raise ValueError(f'merge_groups: {gn} maps are not divisible into {groups} groups')
    return instance_features.reshape(b, groups, gn // groups, c).transpose(1, 2).reshape(
        b, gn // groups, groups * c)


def kernel_masks(kernels: Tensor, mask_features: Tensor) -> Tensor:
    """Dynamic 1x1 convolution of the mask features by each instance kernel.

    Args:
        kernels: (B, N, Dk).
        mask_features: (B, Dk, H, W).

    Returns:
        (B, N, H, W) mask logits.
    """
    b, dk, h, w = mask_features.shape
    return torch.bmm(kernels, mask_features.reshape(b, dk, h * w)).reshape(b, -1, h, w)


def conv3x3_stack(num_convs: int, in_channels: int, channels: int) -> nn.Sequential:
    """``num_convs`` x (3x3 conv + ReLU), MSRA-initialised: (B, in, H, W) -> (B, channels, H, W)."""
    layers = []
    for i in range(num_convs):
        conv = nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1)
        msra_fill(conv)
        layers += [conv, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class InstanceBranch(nn.Module):
    """(B, E, H, W) -> class logits (B, N, K), kernels (B, N, Dk), objectness (B, N, 1),
    IAM logits (B, G*N, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, num_masks: int = 100,
                 dim: int = 256, num_convs: int = 4, kernel_dim: int = 128,
                 iam_type: str = 'group', groups: int = 4, prior_prob: float = 0.01):
        super().__init__()
        if iam_type not in IAM_TYPES:
            raise ValueError(f'iam_type must be one of {IAM_TYPES}, got {iam_type!r}')
        if iam_type == 'base' and groups != 1:
            raise ValueError("iam_type='base' uses one map per instance: set groups=1, or use "
                             "iam_type='group' for G-IAM")
        if groups < 1 or dim % groups:
            raise ValueError(f'groups={groups} must be >= 1 and divide the instance branch '
                             f'dim={dim}')
        self.num_classes, self.num_masks, self.groups = num_classes, num_masks, groups
        self.activation = 'softmax' if iam_type == 'group_softmax' else 'sigmoid'
        self.inst_convs = conv3x3_stack(num_convs, in_channels, dim)
        self.iam_conv = nn.Conv2d(dim, num_masks * groups, 3, padding=1, groups=groups)
        feat_dim = dim * groups
        self.fc = nn.Linear(feat_dim, feat_dim) if iam_type != 'base' else None
        self.cls_score = nn.Linear(feat_dim, num_classes)
        self.mask_kernel = nn.Linear(feat_dim, kernel_dim)
        self.objectness = nn.Linear(feat_dim, 1)
        self.softmax_bias = (nn.Parameter(torch.ones(1)) if self.activation == 'softmax'
                             else None)
        bias = prior_bias(prior_prob)
        for layer in (self.iam_conv, self.cls_score):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, bias)
        nn.init.normal_(self.mask_kernel.weight, std=0.01)
        nn.init.zeros_(self.mask_kernel.bias)
        if self.fc is not None:
            xavier_fill(self.fc)

    def forward(self, features: Tensor):
        features = self.inst_convs(features)
        iam = self.iam_conv(features)
        weights = activation_weights(iam.flatten(2), self.activation, self.softmax_bias)
        inst = aggregate_instance_features(weights, features)
        if self.fc is not None:
            inst = F.relu(self.fc(merge_groups(inst, self.groups)))
        return self.cls_score(inst), self.mask_kernel(inst), self.objectness(inst), iam


class MaskBranch(nn.Module):
    """(B, E, H, W) -> mask features (B, Dk, H, W)."""

    def __init__(self, in_channels: int, dim: int = 256, num_convs: int = 4,
                 kernel_dim: int = 128):
        super().__init__()
        self.mask_convs = conv3x3_stack(num_convs, in_channels, dim)
        self.projection = nn.Conv2d(dim, kernel_dim, 1)
        msra_fill(self.projection)

    def forward(self, features: Tensor) -> Tensor:
        return self.projection(self.mask_convs(features))


class IAMDecoder(nn.Module):
    """Encoder map (B, D, H, W) -> dict of plain tensors:

    * ``cls_logits`` (B, N, K), ``obj_logits`` (B, N, 1), ``mask_logits`` (B, N, s*H, s*W);
    * ``iam`` (B, G*N, s*H, s*W) IAM logits, only when ``output_iam=True``.

    Args:
        in_channels: D (the two CoordConv channels are added here).
        num_classes: K.
        num_masks: N, instances per image (100).
        iam_type: 'base', 'group' (default, G-IAM) or 'group_softmax'.
        groups: G (default 4 for the group variants, 1 for 'base', where it must be 1).
        inst_dim, inst_convs: instance-branch width and depth (256, 4).
        mask_dim, mask_convs: mask-branch width and depth (256, 4).
        kernel_dim: Dk (128).
        scale_factor: s (2).
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 80, num_masks: int = 100,
                 iam_type: str = 'group', groups: Optional[int] = None, inst_dim: int = 256,
                 inst_convs: int = 4, mask_dim: int = 256, mask_convs: int = 4,
                 kernel_dim: int = 128, scale_factor: float = 2.0, output_iam: bool = False):
        super().__init__()
        if groups is None:
            groups = 1 if iam_type == 'base' else 4
        self.num_classes, self.num_masks = num_classes, num_masks
        self.in_channels, self.scale_factor, self.output_iam = in_channels, scale_factor, output_iam
        self.inst_branch = InstanceBranch(in_channels + 2, num_classes, num_masks, inst_dim,
                                          inst_convs, kernel_dim, iam_type, groups)
        self.mask_branch = MaskBranch(in_channels + 2, mask_dim, mask_convs, kernel_dim)

    def _upsample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode='bilinear',
                             align_corners=False)

    def forward(self, features: Tensor) -> Dict[str, Tensor]:
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f'IAMDecoder expects (B, {self.in_channels}, H, W), got '
                             f'{tuple(features.shape)}: in_channels must equal the encoder '
                             'out_channels')
        features = release_coordinates(features)
        cls_logits, kernels, obj_logits, iam = self.inst_branch(features)
        masks = kernel_masks(kernels, self.mask_branch(features))
        out = dict(cls_logits=cls_logits, obj_logits=obj_logits, mask_logits=self._upsample(masks))
        if self.output_iam:
            out['iam'] = self._upsample(iam)
        return out
