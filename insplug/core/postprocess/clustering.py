"""Clustering of pixel embeddings into instances (bottom-up instance segmentation).

Shape shorthand: P pixels (of one image, usually the foreground), D embedding dims, S sigma dims
(1 or D), N instances found, K classes, T seeds / restarts.

* :func:`greedy_seed_clustering` -- SpatialEmbeddings (Neven et al., 2019): repeatedly take the
  unclustered pixel with the highest seed score, use its embedding as a centre and its sigma as
  the bandwidth, and claim every pixel whose Gaussian probability exceeds ``mask_threshold``.
  The process is sequential by nature (each centre depends on the pixels left); every step is
  vectorised over pixels. As in the official code there is no cap on the number of seeds tried
  (``max_proposals=None``; the loop ends because every step clusters at least its seed).
* :func:`mean_shift_clustering` -- flat-kernel mean-shift (De Brabandere et al., 2017) from a
  strided subset of seeds, all seeds shifted at once; converged modes within one bandwidth of a
  denser mode are merged (parallel suppression) and pixels go to the nearest kept mode.
* :func:`kmeans_clustering` -- Lloyd's k-means with a given (e.g. predicted) number of
  instances, k-means++ seeding, several restarts run in parallel, the lowest inertia kept.

All return ``(masks (N, P) bool, scores (N,) float)``-compatible pieces; the image-level wrappers
live with each method.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['gaussian_probability', 'greedy_seed_clustering', 'mean_shift_modes',
           'suppress_close_modes', 'assign_to_modes', 'mean_shift_clustering',
           'kmeans_plusplus_init', 'kmeans_clustering', 'labels_to_masks',
           'GreedySeedClustering',
           'MeanShiftClustering', 'KMeansClustering']


def gaussian_probability(embeddings: Tensor, centers: Tensor, sigma: Tensor) -> Tensor:
    """Instance probability ``exp(-sum_d (e_d - C_d)^2 * exp(10 sigma_d))`` of every pixel.

    Args:
        embeddings: (D, P) float pixel embeddings shared by all centres, or (T, D, P) one
            embedding map per centre.
        centers: (T, D) float centres.
        sigma: (T, S) float bandwidth logits, S = 1 (shared) or D (per dimension).

    Returns:
        (T, P) float in (0, 1].
    """
    diff2 = (embeddings - centers[:, :, None]).pow(2)  # T, D, P
    return torch.exp(-(diff2 * torch.exp(10 * sigma)[:, :, None]).sum(1))


def greedy_seed_clustering(embeddings: Tensor, sigma: Tensor, seed: Tensor,
                           seed_threshold: float = 0.9, mask_threshold: float = 0.5,
                           min_pixels: int = 128, min_unclustered: float = 0.5,
                           max_proposals: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Greedy seed clustering of SpatialEmbeddings over the (foreground) pixels given.

    Official ``Cluster.cluster`` (davyneven/SpatialEmbeddings, src/utils/utils.py): the seed is
    the first arg-max of the unclustered seed scores; the seed pixel is marked clustered before
    its proposal is tested, so it does not count in the unclustered fraction; a kept proposal is
    the whole set of pixels above ``mask_threshold`` (it may overlap earlier instances).

    Args:
        embeddings: (D, P) float spatial embeddings.
        sigma: (S, P) float sigma logits.
        seed: (P,) float seed scores in [0, 1].
        seed_threshold: stop when the best unclustered seed falls below it.
        mask_threshold: a pixel joins a proposal when its probability exceeds this.
        min_pixels: stop when at most this many pixels are unclustered; a proposal must have
            more pixels than this to be kept.
        min_unclustered: a proposal is kept only when more than this fraction of its pixels,
            not counting the seed, was still unclustered.
        max_proposals: optional cap on the number of seeds tried (None, official: no cap; a
            cap bounds the run time of an untrained model, whose proposals are tiny, and
            changes results only when it is reached).

    Returns:
        masks: (N, P) bool, kept proposals in the order found.
        scores: (N,) float, seed score of each kept proposal.
        seed_index: (N,) long, pixel index of each kept proposal's seed.
    """
    num = seed.shape[0]
    unclustered = torch.ones(num, dtype=torch.bool, device=seed.device)
    masks, scores, seeds = [], [], []
    remaining, tried = num, 0
    while remaining > min_pixels and (max_proposals is None or tried < max_proposals):
        # sequential by definition (see module docstring)
        tried += 1
        masked_seed = torch.where(unclustered, seed, seed.new_full((), -1.0))
        index = masked_seed.argmax()
        score = masked_seed[index]
        if score < seed_threshold:
            break
        unclustered[index] = False  # official: the seed is excluded from the fraction below
        prob = gaussian_probability(embeddings, embeddings[:, index][None],
                                    sigma[:, index][None])[0]
        proposal = prob > mask_threshold
        size = int(proposal.sum())
        if size > min_pixels and (unclustered & proposal).sum() > min_unclustered * size:
            masks.append(proposal)
            scores.append(score)
            seeds.append(index)
        unclustered &= ~proposal
        remaining = int(unclustered.sum())
    if not masks:
        return (torch.zeros(0, num, dtype=torch.bool, device=seed.device),
                seed.new_zeros(0), torch.zeros(0, dtype=torch.long, device=seed.device))
    return torch.stack(masks), torch.stack(scores), torch.stack(seeds)


def mean_shift_modes(points: Tensor, seeds: Tensor, bandwidth: float, max_iter: int = 50,
                     tol: float = 1e-3) -> Tensor:
    """Flat-kernel mean-shift of all seeds at once.

    Args:
        points: (P, D) float.
        seeds: (T, D) float starting points.
        bandwidth: kernel radius.
        max_iter: iteration cap.
        tol: stop when no seed moves more than ``tol * bandwidth``.

    Returns:
        (T, D) float converged modes.
    """
    modes = seeds
    for _ in range(max_iter):
        inside = (torch.cdist(modes, points) <= bandwidth).to(points.dtype)  # T, P
        count = inside.sum(1, keepdim=True)
        shifted = torch.where(count > 0, inside @ points / count.clamp(min=1), modes)
        moved = (shifted - modes).norm(dim=1).max()
        modes = shifted
        if moved <= tol * bandwidth:
            break
    return modes


def suppress_close_modes(modes: Tensor, support: Tensor, radius: float) -> Tensor:
    """Keeps a mode unless a mode of larger support (ties: lower index) lies within ``radius``.

    Args:
        modes: (T, D) float.
        support: (T,) float, number of points near each mode.
        radius: merge radius.

    Returns:
        (T,) bool keep flags.
    """
    num = modes.shape[0]
    index = torch.arange(num, device=modes.device)
    stronger = (support[None, :] > support[:, None]) | (
        (support[None, :] == support[:, None]) & (index[None, :] < index[:, None]))
    close = torch.cdist(modes, modes) <= radius
    return ~(close & stronger).any(1)


def assign_to_modes(points: Tensor, modes: Tensor, max_distance: Optional[float]) -> Tensor:
    """Index of the nearest mode of each point (-1 beyond ``max_distance``).

    Args:
        points: (P, D) float.
        modes: (N, D) float.
        max_distance: optional radius.

    Returns:
        (P,) long in [-1, N).
    """
    if modes.shape[0] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    dist, nearest = torch.cdist(points, modes).min(1)
    if max_distance is not None:
        nearest = torch.where(dist <= max_distance, nearest, torch.full_like(nearest, -1))
    return nearest


def labels_to_masks(labels: Tensor, num_clusters: int) -> Tensor:
    """One boolean mask per cluster.

    Args:
        labels: (P,) long in [-1, N); -1 means unassigned.
        num_clusters: N.

    Returns:
        (N, P) bool.
    """
    ids = torch.arange(num_clusters, device=labels.device)
    return labels[None, :] == ids[:, None]


def mean_shift_clustering(points: Tensor, bandwidth: float, max_seeds: int = 512,
                          min_pixels: int = 1, max_iter: int = 50,
                          assign_radius: Optional[float] = None,
                          max_points: int = 20000) -> Tensor:
    """Mean-shift clustering of embeddings.

    Args:
        points: (P, D) float embeddings.
        bandwidth: flat kernel radius (the discriminative loss' ``delta_v``).
        max_seeds: seeds are every ``ceil(P / max_seeds)``-th point.
        min_pixels: clusters with fewer points are dropped (their points get -1).
        max_iter: mean-shift iteration cap.
        assign_radius: points farther than this from every kept mode get -1 (None: no limit).
        max_points: the modes are found on every ``ceil(P / max_points)``-th point (bounds
            memory on large images); all points are then assigned.

    Returns:
        (P,) long cluster index in [-1, N), clusters numbered by decreasing support.
    """
    num = points.shape[0]
    if num == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    sample = points[::-(-num // max_points)]
    modes = mean_shift_modes(sample, points[::-(-num // max_seeds)], bandwidth, max_iter)
    support = (torch.cdist(modes, sample) <= bandwidth).sum(1).to(points.dtype)
    keep = suppress_close_modes(modes, support, bandwidth)
    modes, support = modes[keep], support[keep]
    modes = modes[support.argsort(descending=True, stable=True)]
    labels = assign_to_modes(points, modes, assign_radius)
    sizes = torch.bincount(labels + 1, minlength=modes.shape[0] + 1)[1:]
    big = sizes >= max(min_pixels, 1)
    new_id = torch.cumsum(big.long(), 0) - 1
    new_id = torch.where(big, new_id, torch.full_like(new_id, -1))
    return torch.where(labels >= 0, new_id[labels.clamp(min=0)], labels)


def kmeans_plusplus_init(points: Tensor, k: int, num_restarts: int,
                         gen: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii, 2007) for several restarts at once: the
    first centre uniformly, each next one with probability proportional to the squared distance
    to the nearest centre chosen so far.

    Args:
        points: (P, D) float.
        k: number of centres (<= P).
        num_restarts: R independent seedings.
        gen: CPU random generator.

    Returns:
        (R, k) long point indices.
    """
    num = points.shape[0]
    first = torch.randint(num, (num_restarts,), generator=gen)
    chosen = [first]
    nearest = (points[None] - points[first.to(points.device)][:, None]).pow(2).sum(2)  # R, P
    for _ in range(1, k):  # sequential by definition; k is small
        weights = nearest.double().cpu()
        # all points on a chosen centre (duplicates): fall back to uniform
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights,
                              torch.ones_like(weights))
        nxt = torch.multinomial(weights, 1, generator=gen)[:, 0]
        chosen.append(nxt)
        dist = (points[None] - points[nxt.to(points.device)][:, None]).pow(2).sum(2)
        nearest = torch.minimum(nearest, dist)
    return torch.stack(chosen, 1)


def kmeans_clustering(points: Tensor, num_clusters: int, num_iter: int = 30,
                      num_restarts: int = 10, seed: int = 0, init: str = 'k-means++') -> Tensor:
    """Lloyd's k-means with parallel restarts (k-means++ seeding by default).

    Args:
        points: (P, D) float.
        num_clusters: k (clamped to [0, P]).
        num_iter: Lloyd iterations.
        num_restarts: restarts run in parallel; the lowest inertia wins.
        seed: seed of the random initialisation (deterministic results).
        init: 'k-means++' or 'random' (k distinct random points).

    Returns:
        (P,) long cluster index in [0, k) (k = 0: all -1).
    """
    num = points.shape[0]
    k = min(int(num_clusters), num)
    if k <= 0:
        return torch.full((num,), -1, dtype=torch.long, device=points.device)
    gen = torch.Generator(device='cpu').manual_seed(seed)
    if init == 'k-means++':
        init_idx = kmeans_plusplus_init(points, k, num_restarts, gen)
    elif init == 'random':
        init_idx = torch.stack([torch.randperm(num, generator=gen)[:k]
                                for _ in range(num_restarts)])
    else:
        raise ValueError(f"kmeans_clustering: init must be 'k-means++' or 'random', got {init!r}")
    centers = points[init_idx.to(points.device)]  # R, k, D
    batch_points = points[None].expand(num_restarts, -1, -1)
    for _ in range(num_iter):
        labels = torch.cdist(batch_points, centers).argmin(2)  # R, P
        onehot = torch.nn.functional.one_hot(labels, k).to(points.dtype)  # R, P, k
        counts = onehot.sum(1)  # R, k
        sums = onehot.transpose(1, 2) @ points  # R, k, D
        centers = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None],
                              centers)
    dist = torch.cdist(batch_points, centers)
    inertia = dist.min(2).values.pow(2).sum(1)
    return dist[inertia.argmin()].argmin(1)


class GreedySeedClustering:
    """SpatialEmbeddings' greedy seed clustering with a fixed configuration.

    Defaults are the official test setting (src/test.py: ``cluster(..., threshold=0.9)``; 128
    pixels; no cap on the number of seeds).

    Call: ``(embeddings (P, D), seed (P,), sigma (P, S), num_instances=None)`` ->
    ``(masks (N, P) bool, scores (N,) seed scores)``.
    """
    needs_seed = True

    def __init__(self, seed_threshold: float = 0.9, mask_threshold: float = 0.5,
                 min_pixels: int = 128, min_unclustered: float = 0.5,
                 max_proposals: Optional[int] = None):
        self.seed_threshold = seed_threshold
        self.mask_threshold = mask_threshold
        self.min_pixels = min_pixels
        self.min_unclustered = min_unclustered
        self.max_proposals = max_proposals

    def __call__(self, embeddings: Tensor, seed: Tensor = None, sigma: Tensor = None,
                 num_instances: Optional[int] = None):
        if seed is None or sigma is None:
            raise ValueError('GreedySeedClustering needs `seed` and `sigma` maps; use it with '
                             'a SpatialEmbeddings head, or choose MeanShiftClustering')
        if int(seed.shape[0]) <= self.min_pixels:
            return (torch.zeros(0, seed.shape[0], dtype=torch.bool, device=seed.device),
                    seed.new_zeros(0))
        masks, scores, _ = greedy_seed_clustering(
            embeddings.t(), sigma.t(), seed, self.seed_threshold, self.mask_threshold,
            self.min_pixels, self.min_unclustered, self.max_proposals)
        return masks, scores


class MeanShiftClustering:
    """Flat-kernel mean-shift of embeddings; the bandwidth defaults to the loss' ``delta_v``.

    Call: ``(embeddings (P, D), seed=None, sigma=None, num_instances=None)`` ->
    ``(masks (N, P) bool, None)`` (the caller scores the clusters).
    """
    needs_seed = False

    def __init__(self, bandwidth: float = 0.5, max_seeds: int = 512, min_pixels: int = 1,
                 max_iter: int = 50, assign_radius: Optional[float] = 1.5,
                 max_points: int = 20000):
        self.bandwidth = bandwidth
        self.max_points = max_points
        self.max_seeds = max_seeds
        self.min_pixels = min_pixels
        self.max_iter = max_iter
        self.assign_radius = assign_radius

    def __call__(self, embeddings: Tensor, seed: Tensor = None, sigma: Tensor = None,
                 num_instances: Optional[int] = None):
        labels = mean_shift_clustering(embeddings, self.bandwidth, self.max_seeds,
                                       self.min_pixels, self.max_iter, self.assign_radius,
                                       self.max_points)
        return labels_to_masks(labels, int(labels.max()) + 1 if labels.numel() else 0), None


class KMeansClustering:
    """k-means of embeddings into a given (predicted) number of instances.

    Call: ``(embeddings (P, D), seed=None, sigma=None, num_instances=k)`` ->
    ``(masks (N, P) bool, None)``; clusters smaller than ``min_pixels`` are dropped.
    """
    needs_seed = False

    def __init__(self, num_iter: int = 30, num_restarts: int = 10, min_pixels: int = 1,
                 seed: int = 0, init: str = 'k-means++'):
        self.num_iter = num_iter
        self.num_restarts = num_restarts
        self.min_pixels = min_pixels
        self.seed = seed
        self.init = init

    def __call__(self, embeddings: Tensor, seed: Tensor = None, sigma: Tensor = None,
                 num_instances: Optional[int] = None):
        if num_instances is None:
            raise ValueError('KMeansClustering needs `num_instances`; enable the head\'s '
                             'instance-count branch (predict_count=True)')
        labels = kmeans_clustering(embeddings, num_instances, self.num_iter,
                                   self.num_restarts, self.seed, self.init)
        masks = labels_to_masks(labels, max(min(int(num_instances), embeddings.shape[0]), 0))
        return masks[masks.sum(1) >= self.min_pixels], None
