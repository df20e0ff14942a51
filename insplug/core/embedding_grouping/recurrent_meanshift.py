"""Recurrent Pixel Embedding (Kong and Fowlkes, CVPR 2018): losses, grouping module, inference.

Shape shorthand: B images, D embedding dims, K classes, H/W output size, h/w the loss grid
(``H / loss_stride``), P pixels of one image (or of its foreground), S sampled pixels, R
reference points of the mean-shift kernel, T mean-shift iterations, N instances.

Released behaviour (aimerykong/Recurrent-Pixel-Embedding-for-Instance-Grouping, MatConvNet):

* ``L2normalization.m``: ``x / (||x|| + 1e-5)`` over the embedding channels;
* one grouping loop (``addOneLoop_forMeanShiftGrouping.m`` and the ``meanshift_*`` layers):
  ``S = X X^T``; ``G = exp((S - 1) / delta^2)`` (a von Mises-Fisher kernel of concentration
  ``1 / delta^2``: the paper's ``exp(kappa x^T y)`` up to a constant factor that cancels);
  ``d = sum_j G_ij + 1e-6``; ``q = 1 / (d + 1e-7)``; ``Y_i = q_i sum_j G_ji X_j``; then the L2
  normalisation again (Gaussian-blurring mean-shift on the sphere, every point moves);
* ``cosineSimilarity_randSample.m``: ``floor(h w ratio)`` pixels (at most 4000) drawn without
  replacement, calibrated similarity ``s_ij = (1 + x_i^T x_j) / 2``, pair weights
  ``w_ij = 1 / (n_i n_j)`` normalised to sum 1 (``n_i``: sampled pixels of i's instance; the
  background is one more instance);
* ``vl_nnloss_modified.m``: ``cosinesimilarityabsregloss`` ``sum_ij w_ij [same] (1 - s_ij)`` and
  ``cosinesimilaritymmloss`` ``sum_ij w_ij [different] max(0, s_ij - alpha)``;
* settings: tutorial with grouping loops (demo1 step003/step004): 5 loops, delta 0.1, ratio 0.2,
  margin 0.1 on the embedding and 0.07 after each loop, every loss weight 1; Pascal VOC
  (demo4 main001_trainScript.m): no loop in training, ratio 0.35, margin 0.5, weights 1 (pull)
  and 5 (push), loss on a stride-4 grid (``gt_ins_div4``); its test script runs 16 loops at
  delta 0.2.

The release has no code turning the grouped embeddings into instances (its test scripts only
visualise them); :class:`RecurrentMeanShiftClustering` runs the released loops and then merges
the converged points (docs/deviations/recurrent_embedding.md).
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from insplug.core.bottomup.discriminative import semantic_loss
from insplug.core.postprocess.clustering import labels_to_masks, mean_shift_clustering

__all__ = ['l2_normalize', 'mean_shift_step', 'recurrent_mean_shift', 'pair_weights',
           'sample_pixels', 'calibrated_cosine_loss', 'instance_id_map',
           'recurrent_embedding_loss', 'recurrent_embedding_head_losses',
           'RecurrentMeanShiftClustering']

#: eps added to the norm by the release's L2normalization layer
NORM_EPS = 1e-5


def l2_normalize(x: Tensor, dim: int = -1, eps: float = NORM_EPS) -> Tensor:
    """``x / (||x|| + eps)`` along ``dim`` (the release's L2normalization layer).

    Args:
        x: (..., D, ...) float.

    Returns:
        same shape.
    """
    return x / (x.norm(dim=dim, keepdim=True) + eps)


def mean_shift_step(x: Tensor, bandwidth: float, reference: Optional[Tensor] = None) -> Tensor:
    """One loop of the recurrent mean-shift grouping module (von Mises-Fisher kernel).

    ``Y_i = sum_j G(x_i, r_j) r_j / (sum_j G(x_i, r_j) + 1e-6 + 1e-7)``,
    ``G(x, r) = exp((x^T r - 1) / bandwidth^2)``, then L2-normalised. With ``reference=None``
    the reference set is ``x`` itself (Gaussian-blurring mean-shift, the release's loop).

    Args:
        x: (P, D) float, unit-norm points.
        bandwidth: delta (release 0.1 in training, 0.2 in the VOC test script).
        reference: optional (R, D) unit-norm points defining the density.

    Returns:
        (P, D) float unit-norm shifted points.
    """
    ref = x if reference is None else reference
    kernel = torch.exp((x @ ref.t() - 1) / bandwidth ** 2)  # P, R
    density = kernel.sum(1) + 1e-6
    return l2_normalize((kernel @ ref) / (density + 1e-7)[:, None])


def recurrent_mean_shift(x: Tensor, bandwidth: float, num_iters: int) -> List[Tensor]:
    """``num_iters`` loops of :func:`mean_shift_step` (differentiable).

    Args:
        x: (P, D) float unit-norm embeddings.
        bandwidth: delta.
        num_iters: T >= 0.

    Returns:
        list of T + 1 tensors (P, D): the input, then the output of each loop.
    """
    out = [x]
    for _ in range(num_iters):  # recurrence over iterations, not instances
        out.append(mean_shift_step(out[-1], bandwidth))
    return out


def pair_weights(ids: Tensor, dtype=None) -> Tensor:
    """Instance-size weights of all pairs: ``1 / (n_i n_j)`` normalised to sum 1.

    Args:
        ids: (S,) long group of each sampled pixel (any integers).
        dtype: of the result (default: torch's default dtype).

    Returns:
        (S, S) float, sums to 1.
    """
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    inv = 1.0 / counts[inverse].to(dtype or torch.get_default_dtype())
    w = inv[:, None] * inv[None, :]
    return w / w.sum()


def sample_pixels(num_pixels: int, ratio: float, max_samples: int = 4000,
                  device=None, generator=None) -> Tensor:
    """Pixels drawn without replacement: ``min(floor(P * ratio), max_samples)`` of them.

    Args:
        num_pixels: P.
        ratio: sample ratio (release 0.2 tutorial, 0.35 VOC; 1 keeps every pixel).
        max_samples: cap (release 4000).

    Returns:
        (S,) long indices in [0, P).
    """
    num = min(int(math.floor(num_pixels * ratio + 1e-9)), max_samples, num_pixels)
    if num >= num_pixels:
        return torch.arange(num_pixels, device=device)
    return torch.randperm(num_pixels, generator=generator, device=device)[:num]


def calibrated_cosine_loss(emb: Tensor, ids: Tensor, margin: float) -> Tuple[Tensor, Tensor]:
    """Pairwise calibrated cosine loss of sampled pixels (release's two loss layers).

    Args:
        emb: (S, D) float unit-norm embeddings.
        ids: (S,) long group (instance, or background) of each pixel.
        margin: alpha, the push margin on the calibrated similarity ``(1 + cos) / 2``.

    Returns:
        pull: ``sum w_ij [same] (1 - s_ij)`` (``cosinesimilarityabsregloss``), scalar.
        push: ``sum w_ij [different] max(0, s_ij - alpha)`` (``cosinesimilaritymmloss``).
    """
    sim = 0.5 * (emb @ emb.t()) + 0.5
    same = (ids[:, None] == ids[None, :]).to(emb.dtype)
    w = pair_weights(ids, emb.dtype)
    pull = (w * same * (1 - sim)).sum()
    push = (w * (1 - same) * (sim - margin).clamp(min=0)).sum()
    return pull, push


def instance_id_map(gt_masks: Tensor, gt_img: Tensor, num_images: int) -> Tensor:
    """Per-pixel group: 0 background, ``m + 1`` inside instance m of the batch (where instances
    overlap, the later one).

    Args:
        gt_masks: (M, P) bool.
        gt_img: (M,) long image index.
        num_images: B.

    Returns:
        (B, P) long.
    """
    num_pixels = gt_masks.shape[1]
    values = torch.arange(1, gt_masks.shape[0] + 1, device=gt_masks.device)[:, None] * gt_masks
    return torch.zeros(num_images, num_pixels, dtype=torch.long,
                       device=gt_masks.device).scatter_reduce(
        0, gt_img[:, None].expand(-1, num_pixels), values.long(), reduce='amax')


def pixel_subset(num_pixels: int, stride: int, device=None) -> Tensor:
    """A random subset of ``ceil(P / stride^2)`` pixels (all pixels at stride 1), in which the
    pairwise losses and the grouping loops run.

    Random pixels rather than a regular grid: on a grid of even stride every pixel falls on the
    same tap of a stride-2 transposed-conv output layer, so pixels of different taps would never
    be compared and each object would split into 4 groups.

    Args:
        num_pixels: P.
        stride: s (the release's losses run on its stride-4 map: s = 4 keeps as many pixels).

    Returns:
        (ceil(P / s^2),) long indices in [0, P).
    """
    if stride <= 1:
        return torch.arange(num_pixels, device=device)
    num = -(-num_pixels // (stride * stride))
    return torch.randperm(num_pixels, device=device)[:num]


def recurrent_embedding_loss(embeddings: Tensor, gt_masks: Tensor, gt_img: Tensor,
                             num_iters: int = 5, bandwidth: float = 0.1, margin: float = 0.1,
                             loop_margin: float = 0.07, sample_ratio: float = 0.2,
                             max_samples: int = 4000, pull_weight: float = 1.0,
                             push_weight: float = 1.0, loss_stride: int = 1) -> dict:
    """Calibrated cosine losses on the embedding and after every grouping loop, mean over images.

    Args:
        embeddings: (B, D, H, W) float raw (un-normalised) embeddings.
        gt_masks: (M, H, W) bool; gt_img: (M,) long.
        num_iters: T grouping loops in training (release tutorial 5; VOC 0).
        bandwidth: delta of the loops (release 0.1).
        margin: alpha on the embedding (tutorial 0.1; VOC 0.5).
        loop_margin: alpha after each loop (tutorial 0.07).
        sample_ratio, max_samples: :func:`sample_pixels`, drawn anew for every loss layer as
            in the release.
        pull_weight, push_weight: weights of the two terms (tutorial 1 / 1; VOC 1 / 5).
        loss_stride: losses and loops on ``P / loss_stride^2`` random pixels per image
            (:func:`pixel_subset`; the VOC release works on its stride-4 map).

    Returns:
        ``loss_pull`` and ``loss_push``: each the sum over the T + 1 stages, mean over images.
    """
    batch = embeddings.shape[0]
    emb = embeddings.flatten(2)  # B, D, P
    ids = instance_id_map(gt_masks.flatten(1), gt_img, batch)  # B, P
    pull = embeddings.new_zeros(())
    push = embeddings.new_zeros(())
    for b in range(batch):  # images: the P x P kernel is per image (release batch size 1)
        sub = pixel_subset(emb.shape[2], loss_stride, emb.device)
        x = l2_normalize(emb[b][:, sub].t())  # P', D
        for stage, y in enumerate(recurrent_mean_shift(x, bandwidth, num_iters)):
            idx = sample_pixels(y.shape[0], sample_ratio, max_samples, y.device)
            p, q = calibrated_cosine_loss(y[idx], ids[b, sub[idx]],
                                          margin if stage == 0 else loop_margin)
            pull = pull + p
            push = push + q
    return dict(loss_pull=pull_weight * pull / max(batch, 1),
                loss_push=push_weight * push / max(batch, 1))


class RecurrentMeanShiftClustering:
    """Inference grouping: the recurrent mean-shift loops, then the converged points merged.

    1. embeddings L2-normalised (release);
    2. ``num_iters`` loops at ``bandwidth`` (release VOC test script: 16 loops, delta 0.2) on a
       strided subset of at most ``max_points`` points (the kernel is R x R; the release runs
       the loops on every pixel of its stride-8 map);
    3. the converged subset is clustered by flat mean-shift of radius ``merge_radius``
       (Euclidean on the sphere: ``cos >= 1 - r^2 / 2``; :func:`mean_shift_clustering`);
       default 1.0 (cos >= 0.5): the push margins put different instances at calibrated
       similarity <= 0.1-0.5 (cos <= 0), and on the demo a radius of 0.5 left objects split
       in several modes (segm AP50 0.05 against 0.24 at 1.0, same weights);
    4. every point takes the cluster of its most similar subset point (before the loops);
       clusters under ``min_pixels`` are dropped.

    Call: ``(embeddings (P, D), seed=None, sigma=None, num_instances=None)`` ->
    ``(masks (N, P) bool, None)`` (the caller scores the clusters).
    """
    needs_seed = False

    def __init__(self, bandwidth: float = 0.2, num_iters: int = 16, merge_radius: float = 1.0,
                 min_pixels: int = 1, max_points: int = 2048, max_seeds: int = 256):
        self.bandwidth = bandwidth
        self.num_iters = num_iters
        self.merge_radius = merge_radius
        self.min_pixels = min_pixels
        self.max_points = max_points
        self.max_seeds = max_seeds

    def group(self, embeddings: Tensor) -> Tensor:
        """(P, D) -> (P,) long cluster index in [0, N) (before the size filter)."""
        x = l2_normalize(embeddings)
        ref = x[::-(-x.shape[0] // self.max_points)]
        shifted = recurrent_mean_shift(ref, self.bandwidth, self.num_iters)[-1]
        ref_labels = mean_shift_clustering(shifted, self.merge_radius, self.max_seeds)
        return ref_labels[(x @ ref.t()).argmax(1)]

    def __call__(self, embeddings: Tensor, seed: Tensor = None, sigma: Tensor = None,
                 num_instances: Optional[int] = None):
        if embeddings.shape[0] == 0:
            return torch.zeros(0, 0, dtype=torch.bool, device=embeddings.device), None
        labels = self.group(embeddings)
        count = int(labels.max()) + 1
        sizes = torch.bincount(labels, minlength=count)
        masks = labels_to_masks(labels, count)
        return masks[sizes >= max(self.min_pixels, 1)], None


def recurrent_embedding_head_losses(embeddings: Tensor, semantic_logits: Tensor,
                                    gt_masks: Tensor, gt_labels: Tensor, gt_img: Tensor,
                                    loss_cfg: Optional[dict] = None,
                                    semantic_weight: float = 1.0) -> dict:
    """All losses of the recurrent-pixel-embedding model for a batch.

    Args:
        embeddings: (B, D, H, W) float raw embeddings.
        semantic_logits: (B, K + 1, H, W) float (channel 0 background), or None (embedding-only,
            as the release's VOC training).
        gt_masks: (M, H, W) bool; gt_labels: (M,) long in [0, K); gt_img: (M,) long.
        loss_cfg: keyword arguments of :func:`recurrent_embedding_loss`.
        semantic_weight: weight of the semantic cross entropy
            (:func:`insplug.core.bottomup.discriminative.semantic_loss`).

    Returns:
        ``loss_pull``, ``loss_push`` and (with a semantic branch) ``loss_semantic``.
    """
    losses = recurrent_embedding_loss(embeddings, gt_masks, gt_img, **(loss_cfg or {}))
    if semantic_logits is not None:
        losses['loss_semantic'] = semantic_weight * semantic_loss(semantic_logits, gt_masks,
                                                                  gt_labels, gt_img)
    return losses
