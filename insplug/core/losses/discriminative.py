"""Discriminative loss for pixel embeddings (De Brabandere, Neven and Van Gool, 2017).

Shape shorthand: B images, D embedding dims, H/W map size, P = H * W pixels per image,
M instances in the whole batch (each belongs to one image), Q (instance, pixel) pairs.

For the instances c = 1..C of one image, with mean embedding ``mu_c`` over the N_c pixels x_i,
``h_v(c) = 1/N_c sum_i [ ||mu_c - x_i|| - delta_v ]_+^2`` and
``h_d(a, b) = [ 2 delta_d - ||mu_a - mu_b|| ]_+^2``.

Official release (the authors' code, davyneven/fastSceneUnderstanding, lossf/myInstanceLoss.lua,
by Neven and De Brabandere; the default here)::

    L_var  = sum_c h_v(c)                                     (variance_norm='sum')
    L_dist = sum_{a < b} h_d(a, b) / (C - 1)                  (distance_norm='release')
    L      = L_var + L_dist        (no regulariser: gamma = 0)

with ``||v|| = sqrt(sum v^2 + 1e-8)`` (``norm_eps``) and only instances of more than one pixel
(``min_pixels=2``). The paper's formulas (options)::

    L_var  = 1/C sum_c h_v(c)                                 (variance_norm='instance')
    L_dist = 1/(C(C-1)) sum_{a != b} h_d(a, b)                (distance_norm='paper')
    L_reg  = 1/C sum_c ||mu_c||                               (gamma = 0.001)

``variance_norm='pixel'`` averages the hinge over all (instance, pixel) pairs of the image
(weighted by pixels), as the third-party Wizaron/instance-segmentation-pytorch does; it is not
the authors' form. delta_v = 0.5, delta_d = 1.5 in both. Every image's terms are computed at once
for the whole batch (scatter sums over instances, an (M, M) centre distance matrix restricted to
same-image pairs), then averaged over the B images; an image without instances contributes 0, and
an image with one instance has a zero distance term.
"""
import torch
from torch import Tensor

VARIANCE_NORMS = ('sum', 'instance', 'pixel')
DISTANCE_NORMS = ('release', 'paper')

__all__ = ['VARIANCE_NORMS', 'DISTANCE_NORMS', 'safe_norm', 'instance_pixel_pairs', 'instance_means', 'per_image_mean',
           'variance_term', 'distance_term', 'regularization_term', 'discriminative_loss']


def safe_norm(x: Tensor, dim: int = -1, eps: float = 1e-12, add_eps: float = 0.0) -> Tensor:
    """Euclidean norm with a finite gradient at 0.

    Args:
        x: (..., D, ...) float.
        dim: dimension to reduce.
        eps: lower clamp of the squared norm.
        add_eps: added to the squared norm first (official release: 1e-8).

    Returns:
        x with ``dim`` reduced: ``sqrt(max(sum x^2 + add_eps, eps))``.
    """
    return (x.pow(2).sum(dim) + add_eps).clamp(min=eps).sqrt()


def instance_pixel_pairs(embeddings: Tensor, gt_masks: Tensor, gt_img: Tensor):
    """Gathers the embedding of every pixel of every instance.

    Args:
        embeddings: (B, D, H, W) float.
        gt_masks: (M, H, W) bool (overlapping masks are allowed).
        gt_img: (M,) long, image index of each instance.

    Returns:
        pair_emb: (Q, D) float, embedding of each (instance, pixel) pair.
        pair_inst: (Q,) long, instance index of each pair.
    """
    batch, dims = embeddings.shape[:2]
    flat = embeddings.reshape(batch, dims, -1)
    inst, pix = gt_masks.reshape(gt_masks.shape[0], -1).nonzero(as_tuple=True)
    return flat[gt_img[inst], :, pix], inst


def instance_means(pair_emb: Tensor, pair_inst: Tensor, num_instances: int):
    """Mean embedding of each instance.

    Args:
        pair_emb: (Q, D) float.
        pair_inst: (Q,) long in [0, M).
        num_instances: M.

    Returns:
        means: (M, D) float (zero for an instance without pixels).
        counts: (M,) float pixel counts.
    """
    dims = pair_emb.shape[1]
    sums = pair_emb.new_zeros(num_instances, dims).index_add_(0, pair_inst, pair_emb)
    counts = pair_emb.new_zeros(num_instances).index_add_(
        0, pair_inst, pair_emb.new_ones(pair_inst.shape[0]))
    return sums / counts.clamp(min=1)[:, None], counts


def per_image_mean(values: Tensor, gt_img: Tensor, num_images: int) -> Tensor:
    """Mean of per-instance values within each image (0 for an image without instances).

    Args:
        values: (M,) float.
        gt_img: (M,) long in [0, B).

    Returns:
        (B,) float.
    """
    sums = values.new_zeros(num_images).index_add_(0, gt_img, values)
    counts = values.new_zeros(num_images).index_add_(0, gt_img, torch.ones_like(values))
    return sums / counts.clamp(min=1)


def variance_term(pair_emb: Tensor, pair_inst: Tensor, means: Tensor, counts: Tensor,
                  delta_v: float, norm_eps: float = 0.0, per_pixel: bool = False) -> Tensor:
    """Per-instance pull term ``1/N_c sum_i [||mu_c - x_i|| - delta_v]_+^2`` (or its sum over
    the pixels with ``per_pixel``).

    Args:
        pair_emb: (Q, D) float.
        pair_inst: (Q,) long in [0, M).
        means: (M, D) float.
        counts: (M,) float.
        delta_v: pull margin.
        norm_eps: added under the square root of the norm.
        per_pixel: return the sum over the instance's pixels instead of the mean.

    Returns:
        (M,) float.
    """
    hinge = (safe_norm(pair_emb - means[pair_inst], dim=1, add_eps=norm_eps) - delta_v).clamp(
        min=0).pow(2)
    sums = means.new_zeros(means.shape[0]).index_add_(0, pair_inst, hinge)
    return sums if per_pixel else sums / counts.clamp(min=1)


def distance_term(means: Tensor, gt_img: Tensor, num_images: int, delta_d: float,
                  norm: str = 'release', norm_eps: float = 0.0) -> Tensor:
    """Per-image push term: ``sum_{a < b} h_d / (C - 1)`` (``norm='release'``) or
    ``sum_{a != b} h_d / (C (C - 1))`` (``norm='paper'``), ``h_d = [2 delta_d -
    ||mu_a - mu_b||]_+^2``.

    Args:
        means: (M, D) float.
        gt_img: (M,) long in [0, B).
        num_images: B.
        delta_d: push margin (the hinge acts below ``2 * delta_d``).
        norm: 'release' or 'paper'.
        norm_eps: added under the square root of the norm.

    Returns:
        (B,) float; 0 for images with fewer than two instances.
    """
    if norm not in DISTANCE_NORMS:
        raise ValueError(f'distance_term: norm must be one of {DISTANCE_NORMS}, got {norm!r}')
    num = means.shape[0]
    dist = safe_norm(means[:, None, :] - means[None, :, :], dim=2, add_eps=norm_eps)
    pair = (gt_img[:, None] == gt_img[None, :]) & ~torch.eye(num, dtype=torch.bool,
                                                              device=means.device)
    hinge = (2 * delta_d - dist).clamp(min=0).pow(2) * pair
    sums = means.new_zeros(num_images).index_add_(0, gt_img, hinge.sum(1))
    per_img = means.new_zeros(num_images).index_add_(0, gt_img, means.new_ones(num))
    if norm == 'release':  # unordered pairs (half the ordered sum) over C - 1
        return 0.5 * sums / (per_img - 1).clamp(min=1)
    return sums / (per_img * (per_img - 1)).clamp(min=1)


def regularization_term(means: Tensor, gt_img: Tensor, num_images: int) -> Tensor:
    """Per-image ``1/C sum_c ||mu_c||``.

    Args:
        means: (M, D) float.
        gt_img: (M,) long in [0, B).

    Returns:
        (B,) float.
    """
    return per_image_mean(safe_norm(means, dim=1), gt_img, num_images)


def discriminative_loss(embeddings: Tensor, gt_masks: Tensor, gt_img: Tensor,
                        delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0,
                        beta: float = 1.0, gamma: float = 0.0, variance_norm: str = 'sum',
                        distance_norm: str = 'release', norm_eps: float = 1e-8,
                        min_pixels: int = 2) -> dict:
    """Discriminative loss of a batch, averaged over images.

    Defaults: the authors' release (module docstring); the paper's form is
    ``variance_norm='instance', distance_norm='paper', gamma=0.001, norm_eps=0,
    min_pixels=1``.

    Args:
        embeddings: (B, D, H, W) float pixel embeddings.
        gt_masks: (M, H, W) bool instance masks of all images.
        gt_img: (M,) long image index of each mask.
        delta_v, delta_d: pull and push margins.
        alpha, beta, gamma: weights of the variance, distance and regularisation terms.
        variance_norm: 'sum' (release: sum over instances of per-instance means), 'instance'
            (paper: mean over instances) or 'pixel' (mean over all (instance, pixel) pairs).
        distance_norm: 'release' (unordered pairs / (C - 1)) or 'paper' (ordered pairs /
            (C (C - 1))).
        norm_eps: added under the square root of every norm (release 1e-8).
        min_pixels: masks with fewer pixels are ignored (release: more than one pixel).

    Returns:
        dict of weighted scalar terms ``loss_var``, ``loss_dist``, ``loss_reg`` (each the mean
        over the B images; zero, with a gradient path, when there are no instances).
    """
    if embeddings.dim() != 4:
        raise ValueError(f'discriminative_loss: `embeddings` must be (B, D, H, W), got '
                         f'{tuple(embeddings.shape)}')
    if gt_masks.shape[1:] != embeddings.shape[2:] or gt_masks.shape[0] != gt_img.shape[0]:
        raise ValueError(f'discriminative_loss: `gt_masks` {tuple(gt_masks.shape)} must be '
                         f'(M, H, W) with the map size of `embeddings` '
                         f'{tuple(embeddings.shape)}, and `gt_img` {tuple(gt_img.shape)} (M,)')
    if variance_norm not in VARIANCE_NORMS:
        raise ValueError(f'discriminative_loss: variance_norm must be one of {VARIANCE_NORMS}, '
                         f'got {variance_norm!r}')
    if distance_norm not in DISTANCE_NORMS:
        raise ValueError(f'discriminative_loss: distance_norm must be one of {DISTANCE_NORMS}, '
                         f'got {distance_norm!r}')
    if delta_d * 2 <= delta_v:
        raise ValueError(f'discriminative_loss: need 2 * delta_d > delta_v, got delta_v={delta_v}'
                         f', delta_d={delta_d}')
    batch = embeddings.shape[0]
    zero = embeddings.sum() * 0.0
    # a mask without pixels has no mean; the release also skips one-pixel masks
    nonempty = gt_masks.flatten(1).sum(1) >= max(min_pixels, 1)
    gt_masks, gt_img = gt_masks[nonempty], gt_img[nonempty]
    if gt_masks.shape[0] == 0:
        return dict(loss_var=zero, loss_dist=zero, loss_reg=zero)
    pair_emb, pair_inst = instance_pixel_pairs(embeddings, gt_masks.bool(), gt_img)
    means, counts = instance_means(pair_emb, pair_inst, gt_masks.shape[0])
    per_inst = variance_term(pair_emb, pair_inst, means, counts, delta_v, norm_eps,
                             per_pixel=variance_norm == 'pixel')
    if variance_norm == 'instance':
        var = per_image_mean(per_inst, gt_img, batch)
    else:
        var = per_inst.new_zeros(batch).index_add_(0, gt_img, per_inst)
        if variance_norm == 'pixel':
            var = var / per_inst.new_zeros(batch).index_add_(0, gt_img, counts).clamp(min=1)
    dist = distance_term(means, gt_img, batch, delta_d, distance_norm, norm_eps)
    reg = regularization_term(means, gt_img, batch)
    return dict(loss_var=alpha * var.mean() + zero, loss_dist=beta * dist.mean() + zero,
                loss_reg=gamma * reg.mean() + zero)
