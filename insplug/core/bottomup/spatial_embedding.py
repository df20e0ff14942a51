"""SpatialEmbeddings (Neven et al., CVPR 2019): loss and inference.

Shape shorthand: B images, K classes (one seed map each), S sigma dims (1 or 2), H/W output
size, P = H * W, M ground-truth instances in the batch, N predicted instances.

Every pixel predicts an offset ``o`` (tanh-squashed) from its own coordinate ``x``, giving the
spatial embedding ``e = x + tanh(o)``, a sigma ``s`` (clustering bandwidth) and one seed score per
class. Coordinates are pixel indices times ``spacing``: the official grid is
``linspace(0, 2, 2048)`` in x and ``linspace(0, 1, 1024)`` in y (the 1024 x 2048 Cityscapes
image), i.e. spacings 2/2047 in x and 1/1023 in y (:data:`OFFICIAL_SPACING`). Unlike the official
grid, which is cut from that fixed 1024 x 2048 buffer, this grid extends to any image size.
For a ground-truth instance with centre C (mean coordinate of its pixels) and mean sigma s_k,
the instance probability of every pixel of its image is::

    phi(e) = exp(-sum_d (e_d - C_d)^2 * exp(10 s_d))

Loss per image (official weights): Lovasz hinge of ``2 phi - 1`` against the instance mask, mean
over instances (weight 1); sigma smoothness ``mean (s - s_k.detach())^2`` over the instance's
pixels, mean over instances (weight 10); seed loss ``sum_p w (seed - target)^2 / P`` where the
target of a pixel of a class-k instance in seed map k is ``phi.detach()`` with weight
``foreground_weight`` (10) and 0 with weight 1 everywhere else. Terms are averaged over the B
images. All instances of the batch are handled at once; no loop over instances or images.
"""
from typing import Sequence, Union

import torch
from torch import Tensor

from insplug.core.bottomup.instances import majority_vote_labels, scatter_masks
from insplug.core.losses.discriminative import per_image_mean
from insplug.core.losses.lovasz import lovasz_hinge_batched
from insplug.core.postprocess.clustering import GreedySeedClustering, gaussian_probability

__all__ = ['OFFICIAL_SPACING', 'xy_spacing', 'coordinate_grid', 'spatial_embeddings',
           'masked_mean',
           'seed_targets', 'spatial_embedding_loss',
           'spatial_embedding_inference']

#: (x, y) coordinate units per pixel of the official code (src/criterions/my_loss.py and
#: src/utils/utils.py: ``linspace(0, 2, 2048)`` x ``linspace(0, 1, 1024)``).
OFFICIAL_SPACING = (2.0 / 2047, 1.0 / 1023)

Spacing = Union[float, Sequence[float]]


def xy_spacing(spacing: Spacing):
    """``(x, y)`` spacing from one number (both axes) or a pair."""
    if isinstance(spacing, (int, float)):
        return float(spacing), float(spacing)
    sx, sy = spacing
    return float(sx), float(sy)


def coordinate_grid(height: int, width: int, spacing: Spacing = OFFICIAL_SPACING,
                    device=None, dtype=torch.float32) -> Tensor:
    """Pixel coordinates ``(x * spacing_x, y * spacing_y)``.

    Args:
        spacing: one number for both axes or ``(spacing_x, spacing_y)``.

    Returns:
        (2, H, W) float; channel 0 is x (column), channel 1 is y (row).
    """
    sx, sy = xy_spacing(spacing)
    ys = torch.arange(height, device=device, dtype=dtype) * sy
    xs = torch.arange(width, device=device, dtype=dtype) * sx
    return torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])


def spatial_embeddings(offset_logits: Tensor, spacing: Spacing = OFFICIAL_SPACING) -> Tensor:
    """Spatial embedding ``coordinate + tanh(offset)`` of every pixel.

    Args:
        offset_logits: (B, 2, H, W) float raw offsets.

    Returns:
        (B, 2, H, W) float.
    """
    grid = coordinate_grid(*offset_logits.shape[-2:], spacing, offset_logits.device,
                           offset_logits.dtype)
    return torch.tanh(offset_logits) + grid[None]


def masked_mean(values: Tensor, masks: Tensor) -> Tensor:
    """Mean of ``values`` over each mask.

    Args:
        values: (M, C, P) float.
        masks: (M, P) float {0, 1}.

    Returns:
        (M, C) float.
    """
    return (values * masks[:, None]).sum(2) / masks.sum(1).clamp(min=1)[:, None]


def seed_targets(prob: Tensor, masks: Tensor, gt_labels: Tensor, gt_img: Tensor,
                 num_images: int, num_classes: int, foreground_weight: float):
    """Per-class seed targets and weights.

    Args:
        prob: (M, P) float instance probabilities (detached by the caller).
        masks: (M, P) bool instance masks.
        gt_labels: (M,) long in [0, K).
        gt_img: (M,) long in [0, B).

    Returns:
        target: (B, K, P) float, ``prob`` inside each instance's mask in its class map, else 0.
        weight: (B, K, P) float, ``foreground_weight`` inside masks, else 1.
    """
    num_pixels = masks.shape[1]
    rows = (gt_img * num_classes + gt_labels)[:, None].expand(-1, num_pixels)
    target = prob.new_zeros(num_images * num_classes, num_pixels).scatter_reduce(
        0, rows, prob * masks, reduce='amax')
    inside = prob.new_zeros(num_images * num_classes, num_pixels).scatter_reduce(
        0, rows, masks.to(prob.dtype), reduce='amax')
    weight = 1.0 + (foreground_weight - 1.0) * inside
    shape = (num_images, num_classes, num_pixels)
    return target.view(shape), weight.view(shape)


def spatial_embedding_loss(offset_logits: Tensor, sigma: Tensor, seed_logits: Tensor,
                           gt_masks: Tensor, gt_labels: Tensor, gt_img: Tensor,
                           spacing: Spacing = OFFICIAL_SPACING, to_center: bool = True,
                           foreground_weight: float = 10.0, instance_weight: float = 1.0,
                           sigma_weight: float = 10.0, seed_weight: float = 1.0) -> dict:
    """SpatialEmbeddings loss of a batch.

    Args:
        offset_logits: (B, 2, H, W) float raw offsets.
        sigma: (B, S, H, W) float sigma logits.
        seed_logits: (B, K, H, W) float seed logits (one map per class).
        gt_masks: (M, H, W) bool instance masks (empty ones are ignored).
        gt_labels: (M,) long classes in [0, K).
        gt_img: (M,) long image index of each instance.
        spacing: coordinate units per pixel, one number or ``(x, y)``.
        to_center: attract to the mean coordinate (True, official) or to the mean embedding.
        foreground_weight: seed-loss weight of instance pixels.
        instance_weight, sigma_weight, seed_weight: weights of the three terms.

    Returns:
        dict of weighted scalars ``loss_instance``, ``loss_sigma``, ``loss_seed`` (means over
        images).
    """
    batch, num_classes = seed_logits.shape[:2]
    height, width = offset_logits.shape[-2:]
    if gt_masks.shape[1:] != (height, width):
        raise ValueError(f'spatial_embedding_loss: `gt_masks` {tuple(gt_masks.shape)} must be '
                         f'(M, H, W) with the output size {height}x{width}; pad the masks to '
                         'the batch input shape')
    if gt_labels.numel() and (gt_labels.min() < 0 or gt_labels.max() >= num_classes):
        raise ValueError(f'spatial_embedding_loss: `gt_labels` must lie in [0, {num_classes}) '
                         f'(one seed map per class), got {gt_labels.unique().tolist()}; set the '
                         'head\'s num_classes to the dataset\'s class count')
    zero = offset_logits.sum() * 0 + sigma.sum() * 0
    keep = gt_masks.flatten(1).any(1)
    masks = gt_masks[keep].flatten(1)
    labels, img = gt_labels[keep], gt_img[keep]
    seed = torch.sigmoid(seed_logits).flatten(2)  # B, K, P
    emb = spatial_embeddings(offset_logits, spacing).flatten(2)  # B, 2, P
    sig = sigma.flatten(2)
    if masks.shape[0] == 0:
        seed_loss = seed.pow(2).sum((1, 2)) / (height * width)
        return dict(loss_instance=zero, loss_sigma=zero,
                    loss_seed=seed_weight * seed_loss.mean())
    fmask = masks.to(emb.dtype)
    inst_emb = emb[img]  # M, 2, P
    if to_center:
        grid = coordinate_grid(height, width, spacing, emb.device, emb.dtype).flatten(1)
        centers = masked_mean(grid[None].expand(masks.shape[0], -1, -1), fmask)
    else:
        centers = masked_mean(inst_emb, fmask)
    inst_sig = sig[img]  # M, S, P
    sig_mean = masked_mean(inst_sig, fmask)  # M, S
    var = ((inst_sig - sig_mean.detach()[:, :, None]).pow(2) * fmask[:, None]).sum((1, 2)) / (
        fmask.sum(1) * inst_sig.shape[1])
    prob = gaussian_probability(inst_emb, centers, sig_mean)  # M, P
    inst = lovasz_hinge_batched(2 * prob - 1, masks)
    target, weight = seed_targets(prob.detach(), masks, labels, img, batch, num_classes,
                                  foreground_weight)
    seed_loss = (weight * (seed - target).pow(2)).sum((1, 2)) / (height * width)
    return dict(
        loss_instance=instance_weight * per_image_mean(inst, img, batch).mean() + zero,
        loss_sigma=sigma_weight * per_image_mean(var, img, batch).mean() + zero,
        loss_seed=seed_weight * seed_loss.mean())


def spatial_embedding_inference(offset_logits: Tensor, sigma: Tensor, seed_logits: Tensor,
                                clusterer=None, spacing: Spacing = OFFICIAL_SPACING,
                                foreground_threshold: float = 0.5):
    """Instances of one image: cluster the foreground pixels' spatial embeddings.

    Args:
        offset_logits: (2, H, W) float.
        sigma: (S, H, W) float.
        seed_logits: (K, H, W) float.
        clusterer: callable ``(embeddings (P', 2), seed (P',), sigma (P', S))`` ->
            ``(masks (N, P') bool, scores (N,) or None)``; default: official greedy seed
            clustering (:class:`~insplug.core.postprocess.clustering.GreedySeedClustering`).
        foreground_threshold: pixels whose best class seed exceeds this are clustered.

    Returns:
        masks: (N, H, W) bool.
        labels: (N,) long, majority vote of the per-pixel best seed class.
        scores: (N,) float, the clusterer's scores (greedy: seed score of the seed pixel), else
            the mean best seed over the mask.
    """
    clusterer = GreedySeedClustering() if clusterer is None else clusterer
    height, width = offset_logits.shape[-2:]
    seed = torch.sigmoid(seed_logits).flatten(1)  # K, P
    fg_seed = seed.max(0).values
    fg = fg_seed > foreground_threshold
    emb = spatial_embeddings(offset_logits[None], spacing)[0].flatten(1)
    sub_masks, scores = clusterer(emb[:, fg].t(), seed=fg_seed[fg],
                                  sigma=sigma.flatten(1)[:, fg].t())
    masks = scatter_masks(sub_masks, fg)
    if scores is None:
        scores = masked_mean(fg_seed[None, None].expand(masks.shape[0], 1, -1),
                             masks.to(fg_seed.dtype))[:, 0]
    labels = majority_vote_labels(masks, seed)
    return masks.view(-1, height, width), labels, scores
