"""EmbedMask maths: mask probabilities from embeddings, training targets and losses.

Shape shorthand: B images, D embedding dims, N proposals/objects, H x W mask grid (stride 4:
P3 upsampled 2x), P points, G objects of one image.

Every point of the FCOS head predicts a proposal embedding q (D,) and a margin s (a scalar or
(D,)); the mask branch predicts a pixel embedding p (D,) per grid cell. The mask probability of
a pixel for a proposal is ``exp(-sum_d s_d (p_d - q_d)^2)``. The first two dimensions of both
embeddings carry the point/pixel coordinates (scaled by a learned factor / 100) plus a learned
offset. The margin conv is biased so that its initial margin puts probability 0.5 at embedding
distance ``prior_margin``. In training each object's proposal embedding and margin are the means
over its positive points whose predicted box overlaps it well (IoU > 0.5, or the best one), and
the mask loss is the Lovasz hinge of the probability's logit, inside the object's box padded by
10% of its size.
"""
import math

import torch
from torch import Tensor
from torchvision.ops import box_iou

from insplug.core.losses.lovasz import lovasz_hinge_batched

LOGIT_CLAMP = math.log((1 - 1e-9) / 1e-9)  # probabilities clamped to [1e-9, 1 - 1e-9]


def margin_bias(prior_margin: float) -> float:
    """Bias of the margin conv: exp(bias) * prior_margin^2 = ln 2 (probability 0.5 there)."""
    return math.log(math.log(2.0) / prior_margin ** 2)


def embedding_distance(pixel_embed: Tensor, proposal_embed: Tensor, margin: Tensor) -> Tensor:
    """Margin-weighted squared distance of every pixel to every proposal.

    Args:
        pixel_embed: (D, H, W).
        proposal_embed: (N, D).
        margin: (N,) or (N, D) positive margins.

    Returns:
        (N, H, W) ``sum_d s_d (p_d - q_d)^2``.
    """
    margin = margin[:, :, None, None] if margin.dim() == 2 else margin[:, None, None, None]
    diff = pixel_embed[None] - proposal_embed[:, :, None, None]
    return (margin * diff * diff).sum(dim=1)


def mask_probability(pixel_embed: Tensor, proposal_embed: Tensor, margin: Tensor) -> Tensor:
    """``exp(-distance)``: (D, H, W), (N, D), (N,) or (N, D) -> (N, H, W) in (0, 1]."""
    return torch.exp(-embedding_distance(pixel_embed, proposal_embed, margin))


def mask_logits(distance: Tensor) -> Tensor:
    """Logit of ``exp(-distance)``, i.e. ``-v - log(1 - exp(-v))``, clamped like a probability
    in [1e-9, 1 - 1e-9]. Any shape."""
    v = distance.clamp(min=1e-12)
    return (-v - torch.log(-torch.expm1(-v))).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


def box_region(boxes: Tensor, height: int, width: int, pad: float = 0.0,
               pad_pixels: float = 0.0) -> Tensor:
    """Grid cells whose centres lie in boxes enlarged by ``pad`` of their size plus ``pad_pixels``.

    Args:
        boxes: (N, 4) in grid units.
        height, width: grid size.

    Returns:
        (N, H, W) bool.
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    x1 = boxes[:, 0] - w * pad - pad_pixels
    x2 = boxes[:, 2] + w * pad + pad_pixels
    y1 = boxes[:, 1] - h * pad - pad_pixels
    y2 = boxes[:, 3] + h * pad + pad_pixels
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    in_x = (xs[None] >= x1[:, None]) & (xs[None] <= x2[:, None])  # (N, W)
    in_y = (ys[None] >= y1[:, None]) & (ys[None] <= y2[:, None])  # (N, H)
    return in_y[:, :, None] & in_x[:, None, :]


def select_mask_samples(pred_boxes: Tensor, gt_boxes: Tensor, gt_index: Tensor,
                        num_gts: int, iou_threshold: float = 0.5) -> Tensor:
    """Positive points that sample their object's embedding: predicted-box IoU above the
    threshold, or the best point of an object that has none above it.

    Args:
        pred_boxes: (P, 4) decoded boxes of the positive points.
        gt_boxes: (G, 4) objects.
        gt_index: (P,) object of each positive point.
        num_gts: G.
        iou_threshold: 0.5.

    Returns:
        (P,) bool.
    """
    if pred_boxes.shape[0] == 0:
        return gt_index.new_zeros((0,), dtype=torch.bool)
    iou = box_iou(pred_boxes, gt_boxes)[torch.arange(len(gt_index)), gt_index]
    best = iou.new_full((num_gts,), -1.0).scatter_reduce(0, gt_index, iou, reduce='amax')
    return (iou > iou_threshold) | (iou >= best[gt_index])


def group_means(values: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Mean of the rows of each group.

    Args:
        values: (P, C); group: (P,) long in [0, num_groups).

    Returns:
        (num_groups, C); empty groups get zeros.
    """
    sums = values.new_zeros((num_groups, values.shape[1])).index_add(0, group, values)
    counts = torch.bincount(group, minlength=num_groups).clamp(min=1).to(values)
    return sums / counts[:, None]


def smooth_loss(values: Tensor, group: Tensor, image_of_group: Tensor, num_groups: int,
                num_images: int) -> Tensor:
    """EmbedMask's smoothness term: per object, the summed squared deviation of its samples
    from their mean; averaged over the objects of an image, then over images.

    Args:
        values: (P, C) sampled proposal embeddings and margins, concatenated.
        group: (P,) object of each sample (global over the batch).
        image_of_group: (num_groups,) image of each object.
        num_groups, num_images: counts.

    Returns:
        scalar.
    """
    if values.shape[0] == 0:
        return values.sum() * 0.0
    means = group_means(values, group, num_groups)
    dev = ((values - means[group]) ** 2).sum(dim=1)
    per_group = values.new_zeros(num_groups).index_add(0, group, dev)
    per_image = values.new_zeros(num_images).index_add(0, image_of_group, per_group)
    groups_per_image = torch.bincount(image_of_group, minlength=num_images).clamp(min=1)
    return (per_image / groups_per_image.to(values)).sum() / num_images


def embed_mask_loss(distance: Tensor, gt_masks: Tensor, valid: Tensor,
                    image_of_object: Tensor, num_images: int) -> Tensor:
    """Lovasz hinge of the mask logits inside each object's padded box.

    Args:
        distance: (N, H, W) margin-weighted distances of each object's mean proposal.
        gt_masks: (N, H, W) {0, 1} targets on the same grid.
        valid: (N, H, W) bool region of each object (padded box).
        image_of_object: (N,) image index of each object.
        num_images: B.

    Returns:
        scalar: mean over objects within an image, then mean over the B images.
    """
    if distance.shape[0] == 0:
        return distance.sum() * 0.0
    per_object = lovasz_hinge_batched(mask_logits(distance).flatten(1), gt_masks.flatten(1),
                                      valid.flatten(1))
    per_image = distance.new_zeros(num_images).index_add(0, image_of_object, per_object)
    counts = torch.bincount(image_of_object, minlength=num_images).clamp(min=1)
    return (per_image / counts.to(distance)).sum() / num_images
