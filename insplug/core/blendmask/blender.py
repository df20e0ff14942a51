"""BlendMask's blender and losses (Chen et al., CVPR 2020, Sec. 3), framework-free.

Shapes: B images, K bases (4), H x W base grid (stride 4), N instances, M attention size (14),
R blender resolution (56), C classes (the semantic head predicts C + 1 with background 0).

* Bottom module -> bases (B, K, H, W) (a :class:`insplug.core.layers.protonet.ProtoNetEncoder`
  over P3-P5); top layer -> attentions (N, K * M * M), one per detection location.
* Blender: RoIAlign (aligned, sampling ratio 1) of the bases in each box to R x R; the
  attentions are bilinearly resized M -> R, softmax-normalised over K, and the mask logits are
  ``sum_k roi_k * attn_k`` (R, R).
* Mask loss: per-instance mean pixel BCE against the GT mask cropped and resized to its box
  (R x R), weighted by the FCOS centerness target of the location and divided by the FCOS
  ``loss_denorm`` (GPU-averaged sum of those targets; :func:`insplug.core.fcos.fcos_losses`).
  In training the boxes are the GT boxes of the matched instances.
* Auxiliary semantic loss on P3: cross-entropy against the "thing" segmentation (background
  0, class c -> c + 1) at stride 8, weight 0.3. As in AdelaiDet
  (``datasets/prepare_thing_sem_from_instance.py``) the map is painted from *all* annotations
  of the image, crowd ones included, in annotation order, so the later one wins at overlaps;
  the model samples it at stride 8 (``F.interpolate(scale_factor=1/8)``, nearest).
* Inference: the blender runs on the unclipped FCOS boxes; pasting follows detectron2's
  ``detector_postprocess`` (:func:`insplug.core.fcos.rescale_clip_boxes`, ``>= 0.5``).
"""
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ['pool_bases', 'blend', 'crop_and_resize_masks', 'blender_mask_loss',
           'thing_semantic_map', 'downsample_semantic', 'semantic_targets', 'semantic_loss']


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
def thing_semantic_map(masks: Tensor, labels: Tensor) -> Tensor:
    """"Thing" semantic map of one image, painted in annotation order (later wins).

    Args:
        masks: (G, H, W) bool/{0, 1} masks of ALL annotations of the image (crowd included),
            in annotation order.
        labels: (G,) int classes in [0, C).

    Returns:
        (H, W) int64: 0 background, c + 1 where the last annotation covering the pixel has
        class c.
    """
    h, w = masks.shape[-2:]
    if masks.size(0) == 0:
        return torch.zeros((h, w), dtype=torch.long, device=labels.device)
    order = torch.arange(1, masks.size(0) + 1, device=masks.device)[:, None, None]
    top = (order * masks.bool()).amax(0)  # (H, W) index + 1 of the last painter, 0 = none
    lab = torch.cat([labels.new_zeros(1), labels.long() + 1]).to(masks.device)
    return lab[top]


def downsample_semantic(sem: Tensor, stride: int, size=None) -> Tensor:
    """Nearest sampling at ``(stride * i, stride * j)`` (``F.interpolate(scale_factor=1/s)``).

    Args:
        sem: (..., H, W) int map. stride: s. size: optional (h, w): the map is then taken as
            zero-padded (AdelaiDet pads ``basis_sem`` with 0 to the batch size first).

    Returns:
        (..., h, w); without ``size``, h = floor(H / s) (``F.interpolate``'s output size).
    """
    out = sem[..., ::stride, ::stride]
    if size is None:
        out = out[..., :sem.shape[-2] // stride, :sem.shape[-1] // stride]
    else:  # the map may be smaller than the padded input: sample, then zero-pad (or crop)
        h, w = size
        pad = out.new_zeros(out.shape[:-2] + (h, w))
        hh, ww = min(h, out.shape[-2]), min(w, out.shape[-1])
        pad[..., :hh, :ww] = out[..., :hh, :ww]
        out = pad
    return out


@torch.no_grad()
def semantic_targets(masks: Tensor, labels: Tensor, size, stride: int) -> Tensor:
    """:func:`thing_semantic_map` then :func:`downsample_semantic` (one image).

    Args:
        masks: (G, Hi, Wi) masks in annotation order (crowd included when available).
        labels: (G,) classes. size: (h, w) of the semantic logits. stride: 8.

    Returns:
        (h, w) int64.
    """
    return downsample_semantic(thing_semantic_map(masks, labels), stride, size)


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
