"""Discriminative-loss instance segmentation (De Brabandere et al., 2017): targets and inference.

Shape shorthand: B images, D embedding dims, K classes (semantic branch has K + 1 channels,
channel 0 = background), H/W output size, P = H * W, M ground-truth instances in the batch,
N predicted instances.

The network predicts a D-dim embedding per pixel (trained with
:func:`insplug.core.losses.discriminative.discriminative_loss`), a semantic segmentation (cross
entropy, optionally class-weighted as in the authors' release) whose arg-max selects the
foreground (official test.lua: ``argmax == car``; here ``argmax != background``) and labels the
clusters by majority vote, and optionally an
instance-count density: a per-pixel value whose sum over one instance is 1, so its sum over the
foreground counts the instances (used by k-means clustering). The count loss per image is
``mean_m |sum_{p in m} d_p - 1| + |sum_{p in background} d_p| / max(C, 1)``.
"""
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.bottomup.instances import majority_vote_labels, scatter_masks
from insplug.core.losses.discriminative import discriminative_loss
from insplug.core.postprocess.clustering import MeanShiftClustering

__all__ = ['semantic_targets', 'semantic_loss', 'count_density_loss', 'predicted_count',
           'discriminative_head_losses', 'discriminative_inference']


def semantic_targets(gt_masks: Tensor, gt_labels: Tensor, gt_img: Tensor,
                     num_images: int) -> Tensor:
    """Per-pixel semantic class: 0 background, ``label + 1`` inside an instance.

    Args:
        gt_masks: (M, P) bool.
        gt_labels: (M,) long in [0, K).
        gt_img: (M,) long in [0, B).
        num_images: B.

    Returns:
        (B, P) long in [0, K].
    """
    num_pixels = gt_masks.shape[1]
    values = (gt_labels + 1)[:, None] * gt_masks.long()
    return torch.zeros(num_images, num_pixels, dtype=torch.long,
                       device=gt_masks.device).scatter_reduce(
        0, gt_img[:, None].expand(-1, num_pixels), values, reduce='amax')


def semantic_loss(semantic_logits: Tensor, gt_masks: Tensor, gt_labels: Tensor,
                  gt_img: Tensor, class_weight: Optional[Tensor] = None) -> Tensor:
    """Pixel-wise cross entropy of the semantic branch (weighted mean when ``class_weight``).

    Args:
        semantic_logits: (B, K + 1, H, W) float.
        gt_masks: (M, H, W) bool.
        gt_labels: (M,) long in [0, K).
        gt_img: (M,) long.
        class_weight: optional (K + 1,) float per-class weights (background first).

    Returns:
        scalar.
    """
    batch, channels = semantic_logits.shape[:2]
    if gt_labels.numel() and (gt_labels.min() < 0 or gt_labels.max() >= channels - 1):
        raise ValueError(f'semantic_loss: `gt_labels` must lie in [0, {channels - 1}), got '
                         f'{gt_labels.unique().tolist()}; set the head\'s num_classes to the '
                         'dataset\'s class count')
    target = semantic_targets(gt_masks.flatten(1), gt_labels, gt_img, batch)
    if class_weight is not None:
        class_weight = torch.as_tensor(class_weight, dtype=semantic_logits.dtype,
                                       device=semantic_logits.device)
    return F.cross_entropy(semantic_logits.flatten(2), target, weight=class_weight)


def count_density_loss(density: Tensor, gt_masks: Tensor, gt_img: Tensor) -> Tensor:
    """Instance-count density loss, mean over images.

    Args:
        density: (B, P) float non-negative per-pixel density.
        gt_masks: (M, P) bool.
        gt_img: (M,) long.

    Returns:
        scalar.
    """
    batch = density.shape[0]
    fmask = gt_masks.to(density.dtype)
    per_inst = (fmask * density[gt_img]).sum(1)  # M
    inst_err = density.new_zeros(batch).index_add_(0, gt_img, (per_inst - 1).abs())
    count = density.new_zeros(batch).index_add_(0, gt_img, torch.ones_like(per_inst))
    covered = density.new_zeros(density.shape).index_add_(0, gt_img, fmask) > 0
    bg_err = (density * ~covered).sum(1)
    return ((inst_err + bg_err) / count.clamp(min=1)).mean()


def predicted_count(density: Tensor, foreground: Tensor) -> int:
    """Rounded sum of the count density over the foreground.

    Args:
        density: (P,) float.
        foreground: (P,) bool.

    Returns:
        int >= 0.
    """
    return int(torch.round(density[foreground].sum()).clamp(min=0))


def discriminative_head_losses(embeddings: Tensor, semantic_logits: Tensor,
                               density: Optional[Tensor], gt_masks: Tensor, gt_labels: Tensor,
                               gt_img: Tensor, loss_cfg: Optional[dict] = None,
                               semantic_weight: float = 1.0,
                               semantic_class_weight: Optional[Sequence[float]] = None,
                               count_weight: float = 0.1,
                               semantic_loss_fn: Optional[Callable] = None) -> dict:
    """All losses of the discriminative-loss model for a batch.

    Args:
        embeddings: (B, D, H, W) float.
        semantic_logits: (B, K + 1, H, W) float (channel 0 background).
        density: (B, H, W) float count density, or None (no count branch).
        gt_masks: (M, H, W) bool; gt_labels: (M,) long in [0, K); gt_img: (M,) long.
        loss_cfg: keyword arguments of
            :func:`insplug.core.losses.discriminative.discriminative_loss` (``delta_v``,
            ``delta_d``, ``alpha``, ``beta``, ``gamma``, ``variance_norm``, ``distance_norm``,
            ``norm_eps``, ``min_pixels``).
        semantic_weight: weight of :func:`semantic_loss`.
        semantic_class_weight: optional (K + 1) cross-entropy class weights.
        count_weight: weight of :func:`count_density_loss` (when ``density`` is given).
        semantic_loss_fn: optional replacement of the cross entropy, called as
            ``fn(semantic_logits (B, K + 1, H, W), targets (B, H, W) long in [0, K])`` (e.g.
            the Lovasz-softmax loss); ``semantic_class_weight`` then does not apply.

    Returns:
        dict of scalars: the discriminative terms, ``loss_semantic`` and (with a density)
        ``loss_count``.
    """
    losses = discriminative_loss(embeddings, gt_masks, gt_img, **(loss_cfg or {}))
    if semantic_loss_fn is None:
        losses['loss_semantic'] = semantic_weight * semantic_loss(
            semantic_logits, gt_masks, gt_labels, gt_img,
            None if semantic_class_weight is None else list(semantic_class_weight))
    else:
        batch, _, height, width = semantic_logits.shape
        targets = semantic_targets(gt_masks.flatten(1), gt_labels, gt_img, batch)
        losses['loss_semantic'] = semantic_weight * semantic_loss_fn(
            semantic_logits, targets.view(batch, height, width))
    if density is not None:
        losses['loss_count'] = count_weight * count_density_loss(
            density.flatten(1), gt_masks.flatten(1), gt_img)
    return losses


def discriminative_inference(embeddings: Tensor, semantic_logits: Tensor, clusterer=None,
                             density: Optional[Tensor] = None, min_pixels: int = 1):
    """Instances of one image: cluster the embeddings of the semantic foreground (pixels whose
    arg-max class is not background, as the authors' release selects its class by arg-max).

    Args:
        embeddings: (D, H, W) float.
        semantic_logits: (K + 1, H, W) float (channel 0 background).
        clusterer: callable ``(embeddings (P', D), num_instances=...)`` ->
            ``(masks (N, P') bool, scores or None)``; default: mean-shift with bandwidth 0.5.
        density: optional (H, W) float count density (gives ``num_instances``).
        min_pixels: smaller clusters are dropped.

    Returns:
        masks: (N, H, W) bool.
        labels: (N,) long in [0, K), majority vote of the per-pixel best foreground class.
        scores: (N,) float, mean probability of the voted class over the mask.
    """
    clusterer = MeanShiftClustering() if clusterer is None else clusterer
    height, width = embeddings.shape[-2:]
    prob = torch.softmax(semantic_logits, 0).flatten(1)  # K + 1, P
    fg = prob.argmax(0) != 0
    num = predicted_count(density.flatten(), fg) if density is not None else None
    sub_masks, scores = clusterer(embeddings.flatten(1)[:, fg].t(), num_instances=num)
    masks = scatter_masks(sub_masks, fg)
    masks = masks[masks.sum(1) >= min_pixels]
    fg_prob = prob[1:]
    labels = majority_vote_labels(masks, fg_prob)
    fmask = masks.to(prob.dtype)
    class_prob = fg_prob[labels]  # N, P
    scores = (class_prob * fmask).sum(1) / fmask.sum(1).clamp(min=1)
    return masks.view(-1, height, width), labels, scores
