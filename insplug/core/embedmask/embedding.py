"""EmbedMask maths (official release, yinghdb/EmbedMask "new version", commit e9d6142): mask
probabilities from proposal and pixel embeddings, the embedding sampling, mask targets, the mask
loss and the test-time log-probability maps.

Shape shorthand: D embedding dims, N proposals/objects, P positive points of one image,
G objects of one image, h x w the pixel-embedding grid (stride 8 / ``mask_scale_factor``: the
finest FPN level upsampled 2x, stride 4), H x W an image.

Every FCOS point predicts a proposal embedding q (D,) and margins s (D,) (one per dimension;
``exp`` of a conv whose two spatial channels are first multiplied by a learned per-level scale);
the pixel branch predicts an embedding p (D,) per grid cell. The first two dimensions of both
embeddings are the point / pixel coordinates times a learned scale / 100 plus a learned offset.
The probability of a pixel for a proposal is ``exp(-sum_d s_d (p_d - q_d)^2)``; the margin conv
is biased so that a distance of ``prior_margin`` gives 0.5 at initialisation.

Training (official ``EmbedMaskLossComputation``): each object samples ONE point, the first (in
point order) of its positive points whose predicted box (detached, pixels) has the maximum IoU
(+1 box areas, maskrcnn-benchmark) with the object's box; objects without a positive point are
left out. Its embedding and margins give the object's probability map on the grid (the pixel
embeddings bilinearly upsampled 2x); the target is the object's mask zero-padded to the grid's
image extent, bilinearly resized to the grid and ``> 0``; the loss is the Lovasz hinge of
``logit(clamp(prob, 1e-9, 1 - 1e-9))`` over the whole grid (``box_padding < 0``, released) or
inside the object's box enlarged by ``box_padding`` of its size plus one cell (earlier
revision), averaged over the objects of an image, summed over images and divided by the number
of images.

Inference (official ``EmbedMaskPostProcessor`` + ``coco_eval``): each detection's log
probability ``-sum_d s_d (p_d - q_d)^2`` is computed inside its box on the grid (box / stride
truncated to integers, enlarged by 2 cells, clipped to the grid), -10 elsewhere; the map is
resized ONCE (bilinear) from the padded grid to the original image scale and thresholded at
``log(mask_thr)``.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.losses.lovasz import lovasz_hinge_batched

LOGIT_CLAMP = math.log((1 - 1e-9) / 1e-9)  # probabilities clamped to [1e-9, 1 - 1e-9]
OUTSIDE_LOG_PROB = -10.0                  # log probability outside a detection's box (official)


def margin_bias(prior_margin: float) -> float:
    """Bias of the margin conv: exp(bias) * prior_margin^2 = ln 2 (probability 0.5 there)."""
    return math.log(math.log(2.0) / prior_margin ** 2)


def margins_from_logits(raw: Tensor, spatial_scale: Optional[Tensor] = None) -> Tensor:
    """Positive margins from the margin conv's output.

    Args:
        raw: (B, C, h, w) margin-conv output (C = D margins, or 1 for one margin).
        spatial_scale: the level's learned scale (one element) of the two spatial margins
            (official ``margin_scales``); None: no scale (one margin).

    Returns:
        (B, C, h, w) ``exp`` of the (scaled) logits.
    """
    if spatial_scale is not None:
        raw = torch.cat([raw[:, :2] * spatial_scale, raw[:, 2:]], dim=1)
    return torch.exp(raw)


def coordinate_embedding(height: int, width: int, stride: int, scale: Tensor,
                         like: Tensor) -> Tensor:
    """Scaled coordinates added to the spatial embedding dims.

    Args:
        height, width: feature map size; stride: its stride (point ``stride * i + stride // 2``).
        scale: learned scale (one element). like: a tensor giving dtype and device.

    Returns:
        (1, 2, height, width) ``(x, y) * scale / 100``.
    """
    xs = torch.arange(width, device=like.device, dtype=like.dtype) * stride + stride // 2
    ys = torch.arange(height, device=like.device, dtype=like.dtype) * stride + stride // 2
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
    return (grid * scale / 100.0)[None]


def embedding_distance(pixel_embed: Tensor, proposal_embed: Tensor, margin: Tensor) -> Tensor:
    """Margin-weighted squared distance of every pixel to every proposal.

    Args:
        pixel_embed: (D, h, w).
        proposal_embed: (N, D).
        margin: (N,) or (N, D) positive margins.

    Returns:
        (N, h, w) ``sum_d s_d (p_d - q_d)^2``.
    """
    margin = margin[:, :, None, None] if margin.dim() == 2 else margin[:, None, None, None]
    diff = pixel_embed[None] - proposal_embed[:, :, None, None]
    return (margin * diff * diff).sum(dim=1)


def mask_probability(pixel_embed: Tensor, proposal_embed: Tensor, margin: Tensor) -> Tensor:
    """``exp(-distance)``: (D, h, w), (N, D), (N,) or (N, D) -> (N, h, w) in (0, 1]."""
    return torch.exp(-embedding_distance(pixel_embed, proposal_embed, margin))


def mask_logits(distance: Tensor) -> Tensor:
    """Logit of ``clamp(exp(-distance), 1e-9, 1 - 1e-9)``, computed stably as
    ``-v - log(1 - exp(-v))`` and clamped to the logits of the same bounds. Any shape."""
    v = distance.clamp(min=1e-12)
    return (-v - torch.log(-torch.expm1(-v))).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


def box_iou_plus1(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Element-wise IoU of paired boxes with maskrcnn-benchmark's +1 areas (``boxlist_iou``).

    Args:
        boxes1, boxes2: (P, 4) x1, y1, x2, y2.

    Returns:
        (P,) IoU.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area1 + area2 - inter)


def sample_first_max_iou(pred_boxes: Tensor, gt_boxes: Tensor, gt_index: Tensor,
                         num_gts: int) -> Tensor:
    """The official embedding sampling: for each object, the first of its positive points whose
    predicted box has the maximum IoU with the object's box.

    Args:
        pred_boxes: (P, 4) decoded (detached) boxes of the positive points, in point order.
        gt_boxes: (G, 4) objects.
        gt_index: (P,) long object of each positive point.
        num_gts: G.

    Returns:
        (G,) long index into the P positives; -1 for an object without positives.
    """
    out = gt_index.new_full((num_gts,), -1)
    if pred_boxes.shape[0] == 0:
        return out
    iou = box_iou_plus1(pred_boxes, gt_boxes[gt_index])
    best = iou.new_full((num_gts,), -float('inf')).scatter_reduce(0, gt_index, iou, 'amax')
    is_best = iou == best[gt_index]
    order = torch.arange(len(gt_index), device=gt_index.device)
    big = len(gt_index)
    first = torch.full((num_gts,), big, dtype=torch.long, device=gt_index.device)
    first = first.scatter_reduce(0, gt_index[is_best], order[is_best], 'amin')
    return torch.where(first < big, first, out)


def mask_targets(masks: Tensor, pad_h: int, pad_w: int, out_h: int, out_w: int) -> Tensor:
    """Official mask targets: zero-pad to the grid's image extent, bilinear resize, ``> 0``.

    Args:
        masks: (G, H, W) {0, 1} masks of one image (H <= pad_h, W <= pad_w).
        pad_h, pad_w: image extent of the grid (grid size x its stride).
        out_h, out_w: grid size.

    Returns:
        (G, out_h, out_w) bool.
    """
    g, h, w = masks.shape
    padded = masks.new_zeros((g, pad_h, pad_w), dtype=torch.float32)
    padded[:, :h, :w] = masks[:, :pad_h, :pad_w].float()
    if g == 0:
        return padded.new_zeros((0, out_h, out_w), dtype=torch.bool)
    return F.interpolate(padded[None], size=(out_h, out_w), mode='bilinear',
                         align_corners=False)[0] > 0


def box_crop_region(boxes: Tensor, height: int, width: int, padding: float) -> Tensor:
    """Loss region of the earlier revision (``BOX_PADDING >= 0``, official ``crop_by_box``):
    columns ``[x1 - pad * w - 1, x2 + pad * w + 1)`` clipped to ``[0, width - 1]``, same for
    rows.

    Args:
        boxes: (N, 4) in grid units.
        height, width: grid size.
        padding: relative padding.

    Returns:
        (N, height, width) bool.
    """
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    x1 = (boxes[:, 0] - bw * padding - 1).clamp(min=0)
    x2 = (boxes[:, 2] + bw * padding + 1).clamp(max=width - 1)
    y1 = (boxes[:, 1] - bh * padding - 1).clamp(min=0)
    y2 = (boxes[:, 3] + bh * padding + 1).clamp(max=height - 1)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    in_x = (xs[None] >= x1[:, None]) & (xs[None] < x2[:, None])
    in_y = (ys[None] >= y1[:, None]) & (ys[None] < y2[:, None])
    return in_y[:, :, None] & in_x[:, None, :]


def embed_mask_loss(distance: Tensor, gt_masks: Tensor, valid: Optional[Tensor],
                    image_of_object: Tensor, num_images: int) -> Tensor:
    """Lovasz hinge of the mask logits (inside ``valid`` if given).

    Args:
        distance: (N, h, w) margin-weighted distances of each object's sampled proposal.
        gt_masks: (N, h, w) {0, 1} targets on the same grid.
        valid: optional (N, h, w) bool loss region of each object (None: the whole grid).
        image_of_object: (N,) image index of each object.
        num_images: B (images without objects count too).

    Returns:
        scalar: mean over the objects of an image, summed over images, divided by B.
    """
    if distance.shape[0] == 0:
        return distance.sum() * 0.0
    per_object = lovasz_hinge_batched(mask_logits(distance).flatten(1), gt_masks.flatten(1),
                                      None if valid is None else valid.flatten(1))
    per_image = distance.new_zeros(num_images).index_add(0, image_of_object, per_object)
    counts = torch.bincount(image_of_object, minlength=num_images).clamp(min=1)
    return (per_image / counts.to(distance)).sum() / num_images


def box_log_prob(pixel_embed: Tensor, proposal_embed: Tensor, margin: Tensor, boxes: Tensor,
                 pad: int = 2) -> Tensor:
    """Test-time log-probability maps, computed inside each box only (official MaskProb op).

    The box (grid units) is truncated to integers, enlarged by ``pad`` cells and clipped to the
    grid; the distance is evaluated on a (N, bh, bw) gather of the largest box size, so no
    detection costs a full-grid distance.

    Args:
        pixel_embed: (D, h, w).
        proposal_embed: (N, D).
        margin: (N, D) or (N,).
        boxes: (N, 4) non-negative x1, y1, x2, y2 in grid units.
        pad: cells added on each side (2).

    Returns:
        (N, h, w) ``-sum_d s_d (p_d - q_d)^2`` inside, ``OUTSIDE_LOG_PROB`` outside.
    """
    d, h, w = pixel_embed.shape
    n = proposal_embed.shape[0]
    out = pixel_embed.new_full((n, h, w), OUTSIDE_LOG_PROB)
    if n == 0:
        return out
    b = boxes.int().long()  # truncation, as ``Tensor.int()`` in the official code
    x1 = (b[:, 0] - pad).clamp(min=0)
    y1 = (b[:, 1] - pad).clamp(min=0)
    x2 = (b[:, 2] + pad).clamp(max=w)
    y2 = (b[:, 3] + pad).clamp(max=h)
    bw = int((x2 - x1).clamp(min=0).max())
    bh = int((y2 - y1).clamp(min=0).max())
    if bw == 0 or bh == 0:
        return out
    xs = x1[:, None] + torch.arange(bw, device=b.device)[None]  # (N, bw)
    ys = y1[:, None] + torch.arange(bh, device=b.device)[None]  # (N, bh)
    inside = (ys < y2[:, None])[:, :, None] & (xs < x2[:, None])[:, None, :]  # (N, bh, bw)
    yi = ys.clamp(max=h - 1)[:, :, None].expand(n, bh, bw)
    xi = xs.clamp(max=w - 1)[:, None, :].expand(n, bh, bw)
    crop = pixel_embed[:, yi, xi]  # (D, N, bh, bw)
    m = margin[:, :, None, None] if margin.dim() == 2 else margin[:, None, None, None]
    diff = crop.permute(1, 0, 2, 3) - proposal_embed[:, :, None, None]
    logp = -(m * diff * diff).sum(dim=1)  # (N, bh, bw)
    flat = (yi * w + xi)[inside]
    obj = torch.arange(n, device=b.device)[:, None, None].expand(n, bh, bw)[inside]
    out.view(n, -1)[obj, flat] = logp[inside]
    return out


def resized_mask_size(grid_h: int, grid_w: int, grid_stride: float, out_h: int, out_w: int,
                      in_h: int, in_w: int) -> Tuple[int, int]:
    """Size the log-probability grid is resized to (official ``coco_eval``, float32):
    ``ceil(grid * stride * out / in)``, ``out`` the output (original) image size and ``in`` the
    network-input image size."""
    s = torch.tensor(grid_stride, dtype=torch.float32)
    h = int((grid_h * s * out_h / in_h).ceil())
    w = int((grid_w * s * out_w / in_w).ceil())
    return h, w


def log_prob_to_masks(log_prob: Tensor, size: Tuple[int, int], out_h: int, out_w: int,
                      mask_thr: float) -> Tensor:
    """Resize the grid maps once (bilinear) and threshold them at ``log(mask_thr)``.

    Args:
        log_prob: (N, h, w) log probabilities on the padded grid.
        size: (H', W') resize target (:func:`resized_mask_size`).
        out_h, out_w: output image size (the result is cropped to it).
        mask_thr: probability threshold (0.53).

    Returns:
        (N, out_h, out_w) bool.
    """
    n = log_prob.shape[0]
    if n == 0:
        return log_prob.new_zeros((0, out_h, out_w), dtype=torch.bool)
    up = F.interpolate(log_prob[:, None].float(), size=size, mode='bilinear',
                       align_corners=False)[:, 0]
    masks = up > torch.tensor(math.log(mask_thr), dtype=torch.float32)
    masks = masks[:, :out_h, :out_w]
    if masks.shape[-2:] != (out_h, out_w):  # grid smaller than the image: pad with False
        masks = F.pad(masks, (0, out_w - masks.shape[-1], 0, out_h - masks.shape[-2]))
    return masks
