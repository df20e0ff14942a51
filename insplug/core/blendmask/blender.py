"""BlendMask's blender and losses (Chen et al., CVPR 2020, Sec. 3), framework-free.

Shapes: B images, K bases (4), H x W base grid (stride 4), N instances, M attention size (14),
R blender resolution (56), C classes (the semantic head predicts C + 1 with background 0).

* Bottom module -> bases (B, K, H, W) (a :class:`insplug.core.layers.protonet.ProtoNetEncoder`
  over P3-P5); top layer -> attentions (N, K * M * M), one per detection location.
* Blender: RoIAlign (aligned, sampling ratio 1) of the bases in each box to R x R; the
  attentions are bilinearly resized M -> R, softmax-normalised over K, and the mask logits are
  ``sum_k roi_k * attn_k`` (R, R).
* Mask loss: per-instance mean pixel BCE against the GT mask cropped and resized to its box
  (R x R), weighted by the FCOS centerness target of the location and divided by the sum of
  those targets. In training the boxes are the GT boxes of the matched instances.
* Auxiliary semantic loss on P3: cross-entropy against the "thing" segmentation built from the
  instance masks (background 0, class c -> c + 1) at stride 8, weight 0.3.
"""
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ['pool_bases', 'blend', 'crop_and_resize_masks', 'centerness_targets',
           'blender_mask_loss', 'semantic_targets', 'semantic_loss']


def pool_bases(bases: Tensor, boxes: Tensor, batch_inds: Tensor, resolution: int = 56,
               spatial_scale: float = 0.25, sampling_ratio: int = 1) -> Tensor:
    """RoIAlign (aligned=True, detectron2's ROIAlignV2) of the bases inside each box.

    Args:
        bases: (B, K, H, W).
        boxes: (N, 4) x1, y1, x2, y2 in input-image pixels.
        batch_inds: (N,) image index of each box.
        resolution: R.
        spatial_scale: 1 / stride of the bases (BlendMask: 1/4).
        sampling_ratio: bilinear samples per bin side (BlendMask: 1).

    Returns:
        (N, K, R, R).
    """
    rois = torch.cat([batch_inds.to(boxes.dtype)[:, None], boxes], dim=1)
    return roi_align(bases, rois.to(bases.dtype), (resolution, resolution), spatial_scale,
                     sampling_ratio, aligned=True)


def blend(rois: Tensor, attns: Tensor, attn_size: int = 14) -> Tensor:
    """The blender: resize attentions to the RoI size, softmax over K, weighted sum of bases.

    Args:
        rois: (N, K, R, R) pooled bases.
        attns: (N, K * M * M) raw top-layer attentions (M = attn_size).
        attn_size: M.

    Returns:
        (N, R, R) mask logits.
    """
    n, k, r, _ = rois.shape
    if attns.shape != (n, k * attn_size * attn_size):
        raise ValueError(f'attns must have shape (N, K*M*M) = ({n}, {k * attn_size ** 2}), '
                         f'got {tuple(attns.shape)}')
    if n == 0:
        return rois.new_zeros((0, r, r)) + attns.sum() * 0
    attn = attns.reshape(n, k, attn_size, attn_size)
    attn = F.interpolate(attn, size=(r, r), mode='bilinear', align_corners=False)
    return (rois * attn.softmax(dim=1)).sum(dim=1)


@torch.no_grad()
def crop_and_resize_masks(masks: Tensor, boxes: Tensor, resolution: int = 56) -> Tensor:
    """Binary masks cropped to boxes and resized to R x R (RoIAlign aligned, >= 0.5).

    Args:
        masks: (G, Hi, Wi) bool/float instance masks in input-image pixels.
        boxes: (G, 4) boxes in the same pixels.
        resolution: R.

    Returns:
        (G, R, R) float {0, 1}.
    """
    if masks.size(0) == 0:
        return masks.new_zeros((0, resolution, resolution), dtype=torch.float32)
    inds = torch.arange(masks.size(0), device=masks.device, dtype=torch.float32)
    rois = torch.cat([inds[:, None], boxes.float()], dim=1)
    out = roi_align(masks[:, None].float(), rois, (resolution, resolution), 1.0, 0,
                    aligned=True)
    return (out[:, 0] >= 0.5).float()


def centerness_targets(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS centerness of each location inside its matched box.

    Args:
        points: (N, 2) x, y locations.
        boxes: (N, 4) matched boxes.

    Returns:
        (N,) sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)), 0 outside the box.
    """
    lr = torch.stack([points[:, 0] - boxes[:, 0], boxes[:, 2] - points[:, 0]], 1).clamp(min=0)
    tb = torch.stack([points[:, 1] - boxes[:, 1], boxes[:, 3] - points[:, 1]], 1).clamp(min=0)
    ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-6)) * \
        (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
    return ratio.sqrt()


def blender_mask_loss(mask_logits: Tensor, mask_targets: Tensor, weights: Tensor,
                      denorm: Tensor) -> Tensor:
    """Centerness-weighted mask BCE.

    Args:
        mask_logits: (N, R, R) blended logits.
        mask_targets: (N, R, R) binary targets.
        weights: (N,) centerness targets.
        denorm: scalar normaliser (sum of the centerness targets over the batch, >= 1e-6).

    Returns:
        scalar ``sum_n w_n * mean_pixels BCE_n / denorm``.
    """
    bce = F.binary_cross_entropy_with_logits(mask_logits, mask_targets, reduction='none')
    return (bce.flatten(1).mean(1) * weights).sum() / denorm


@torch.no_grad()
def semantic_targets(masks: Tensor, labels: Tensor, size, stride: int) -> Tensor:
    """"Thing" semantic map of one image from its instance masks, downsampled by ``stride``.

    Background is 0 and class c is c + 1. Where instances overlap, the smaller one wins.

    Args:
        masks: (G, Hi, Wi) bool/float instance masks.
        labels: (G,) int classes in [0, C).
        size: (h, w) output size (the P3 grid; Hi / stride rounded as the feature map).
        stride: downsampling factor (BlendMask: 8); nearest sampling at the pixel
            ``(stride * i, stride * j)`` like ``F.interpolate(scale_factor=1/stride)``.

    Returns:
        (h, w) int64 map.
    """
    h, w = size
    out = torch.zeros((h, w), dtype=torch.long, device=labels.device)
    if masks.size(0) == 0:
        return out
    sub = masks[:, ::stride, ::stride][:, :h, :w].bool()  # nearest, top-left sample
    areas = masks.flatten(1).float().sum(1)
    order = areas.argsort(descending=True)  # paint large first, small on top
    sub, lab = sub[order], labels[order] + 1
    hs, ws = sub.shape[-2:]
    # last painter wins: index of the last (smallest) instance covering each pixel
    idx = torch.arange(1, sub.size(0) + 1, device=sub.device)[:, None, None] * sub
    top = idx.amax(0)  # (hs, ws), 0 = none
    painted = torch.where(top > 0, lab[(top - 1).clamp(min=0)], torch.zeros_like(top))
    out[:hs, :ws] = painted
    return out


def semantic_loss(logits: Tensor, targets: Tensor, weight: float = 0.3) -> Tensor:
    """Auxiliary semantic cross-entropy.

    Args:
        logits: (B, C + 1, h, w).
        targets: (B, h, w) int64 in [0, C].
        weight: loss weight (BlendMask: 0.3).

    Returns:
        scalar.
    """
    return F.cross_entropy(logits, targets) * weight
