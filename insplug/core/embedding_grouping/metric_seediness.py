"""Semantic instance segmentation via deep metric learning (Fathi et al., 2017).

Shape shorthand: B images, D embedding dims, K classes, L mask-growth thresholds, H/W output
size, P pixels of one image, S sampled pixels, N seeds / instances.

No official code was released (Google; none found). From the paper:

* pixel similarity ``sigma(p, q) = 2 / (1 + exp(||e_p - e_q||^2))`` (1 for equal embeddings,
  towards 0 far apart);
* embedding loss on pairs of sampled pixels (the paper samples K = 10 pixels per object; the
  background is one more group here, as the masks are grown over every pixel): weighted
  logistic loss ``-sum_pq w_pq ([same] log sigma + [different] log(1 - sigma))`` with weights
  inversely proportional to the instance sizes (:func:`~.recurrent_meanshift.pair_weights`:
  ``1 / (n_p n_q)`` over the sampled pixels, normalised to sum 1);
* a seediness (classification) head: for every pixel p and threshold tau_l the class of the
  mask grown from p, ``{q : sigma(p, q) >= tau_l}``; its target is p's class when that mask
  overlaps p's ground-truth instance with IoU >= 0.5, else background; cross entropy on the
  sampled pixels, weight lambda (the paper ramps lambda up to 0.2; constant here);
* inference: seediness ``S(p) = max_{l, c >= 1} P(c | p, tau_l)``; the first seed maximises S,
  each next one ``S(p) * D(p)^alpha`` with the diversity ``D(p) = min_{s chosen}
  ||e_p - e_s||^2`` (alpha 0.3); each seed's mask is grown at the threshold of its best (class,
  threshold) pair, whose probability is the instance score.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insplug.core.bottomup.outputs import OutputLayer, _check_index
from insplug.core.embedding_grouping.recurrent_meanshift import (instance_id_map, pair_weights,
                                                                 pixel_subset)

__all__ = ['pair_similarity', 'sample_per_instance', 'logistic_pair_loss',
           'seediness_targets', 'metric_seediness_loss', 'select_seeds',
           'metric_seediness_inference', 'SeedinessOutputs']

#: the paper's mask-growth thresholds
PAPER_THRESHOLDS = (0.25, 0.5, 0.75)


def pair_similarity(a: Tensor, b: Tensor) -> Tensor:
    """``sigma = 2 / (1 + exp(||a_i - b_j||^2))`` = ``2 sigmoid(-d^2)``.

    Args:
        a: (S, D) float. b: (P, D) float.

    Returns:
        (S, P) float in (0, 1].
    """
    return 2 * torch.sigmoid(-squared_distance(a, b))


def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """Exact ``||a_i - b_j||^2`` (no expansion: 0 on the diagonal).

    Args:
        a: (S, D). b: (P, D).

    Returns:
        (S, P).
    """
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


def sample_per_instance(ids: Tensor, k: int, generator=None) -> Tensor:
    """Up to ``k`` random pixels of every group (all pixels of smaller groups).

    Args:
        ids: (P,) long group of each pixel.
        k: pixels per group (paper 10).

    Returns:
        (S,) long pixel indices, grouped by increasing id.
    """
    keys = torch.rand(ids.shape[0], generator=generator, device=ids.device)
    order = torch.argsort(keys)
    order = order[torch.argsort(ids[order], stable=True)]  # by id, random within
    sorted_ids = ids[order]
    first = torch.searchsorted(sorted_ids, sorted_ids, right=False)
    rank = torch.arange(ids.shape[0], device=ids.device) - first
    return order[rank < k]


def logistic_pair_loss(emb: Tensor, ids: Tensor, eps: float = 1e-12) -> Tensor:
    """Weighted pairwise logistic loss of sampled pixels (all ordered pairs, diagonal included;
    a diagonal pair has sigma = 1 and costs 0).

    Args:
        emb: (S, D) float.
        ids: (S,) long group.
        eps: floor of ``1 - sigma`` inside the log.

    Returns:
        scalar ``-sum w_pq ([same] log sigma + [different] log(1 - sigma))``.
    """
    d2 = squared_distance(emb, emb)
    same = ids[:, None] == ids[None, :]
    log_sim = -F.softplus(d2) + torch.log(torch.tensor(2.0, dtype=emb.dtype))  # log sigma
    # 1 - sigma = tanh(d^2 / 2)
    log_dis = torch.log(torch.tanh(d2 / 2).clamp(min=eps))
    w = pair_weights(ids, emb.dtype)
    return -(w * torch.where(same, log_sim, log_dis)).sum()


def seediness_targets(emb_all: Tensor, sampled: Tensor, ids: Tensor, id_masks: Tensor,
                      id_labels: Tensor, thresholds: Sequence[float],
                      iou_threshold: float = 0.5) -> Tensor:
    """Class targets of the masks grown from sampled pixels (no gradient).

    Args:
        emb_all: (P, D) float embeddings of the image.
        sampled: (S,) long pixel indices.
        ids: (P,) long group of each pixel (0 background, m + 1 instance m).
        id_masks: (M + 1, P) bool mask of each group (row 0 unused).
        id_labels: (M + 1,) long class + 1 of each group (row 0: 0).
        thresholds: L values of tau.
        iou_threshold: a grown mask is "good" above this IoU (paper 0.5).

    Returns:
        (S, L) long in [0, K]: ``id_labels[id]`` for good masks of instance pixels, else 0.
    """
    with torch.no_grad():
        sim = pair_similarity(emb_all[sampled], emb_all)  # S, P
        tau = torch.as_tensor(list(thresholds), dtype=sim.dtype, device=sim.device)
        grown = sim[:, None, :] >= tau[None, :, None]  # S, L, P
        own = id_masks[ids[sampled]]  # S, P
        inter = (grown & own[:, None]).sum(-1)
        union = (grown | own[:, None]).sum(-1)
        good = inter.to(sim.dtype) >= iou_threshold * union.clamp(min=1).to(sim.dtype)
        good &= (ids[sampled] > 0)[:, None]
        return torch.where(good, id_labels[ids[sampled]][:, None], torch.zeros_like(good,
                                                                                  dtype=torch.long))


def metric_seediness_loss(embeddings: Tensor, seediness_logits: Tensor, gt_masks: Tensor,
                          gt_labels: Tensor, gt_img: Tensor,
                          thresholds: Sequence[float] = PAPER_THRESHOLDS,
                          points_per_instance: int = 10, iou_threshold: float = 0.5,
                          embed_weight: float = 1.0, seediness_weight: float = 0.2,
                          loss_stride: int = 1) -> dict:
    """Embedding and seediness losses of a batch, mean over images.

    Args:
        embeddings: (B, D, H, W) float.
        seediness_logits: (B, L * (K + 1), H, W) float, threshold-major (``l * (K + 1) + c``).
        gt_masks: (M, H, W) bool; gt_labels: (M,) long in [0, K); gt_img: (M,) long.
        thresholds: L mask-growth thresholds (paper 0.25, 0.5, 0.75).
        points_per_instance: sampled pixels per group (paper 10).
        iou_threshold: see :func:`seediness_targets`.
        embed_weight: weight of :func:`logistic_pair_loss`.
        seediness_weight: lambda (paper: ramped to 0.2).
        loss_stride: losses on ``P / loss_stride^2`` random pixels per image (sampled pixels
            and the pixels the grown masks are measured on; :func:`~.recurrent_meanshift.pixel_subset`).

    Returns:
        ``loss_embed``, ``loss_seediness``: scalars.
    """
    batch = embeddings.shape[0]
    num_thr = len(thresholds)
    emb = embeddings.flatten(2)  # B, D, P
    logits = seediness_logits.flatten(2)  # B, L(K+1), P
    masks = gt_masks.flatten(1)
    ids = instance_id_map(masks, gt_img, batch)  # B, P
    id_masks = torch.cat([masks.new_zeros(1, masks.shape[1]), masks], 0)
    id_labels = torch.cat([gt_labels.new_zeros(1), gt_labels.long() + 1])
    embed = embeddings.new_zeros(())
    cls = embeddings.new_zeros(())
    for b in range(batch):  # images (pairs are within one image)
        sub = pixel_subset(emb.shape[2], loss_stride, emb.device)
        e = emb[b][:, sub].t()  # P', D
        idx = sample_per_instance(ids[b, sub], points_per_instance)
        embed = embed + logistic_pair_loss(e[idx], ids[b, sub[idx]])
        target = seediness_targets(e.detach(), idx, ids[b, sub], id_masks[:, sub], id_labels,
                                   thresholds, iou_threshold)  # S, L
        lg = logits[b][:, sub[idx]].t().reshape(idx.shape[0], num_thr, -1)  # S, L, K + 1
        cls = cls + F.cross_entropy(lg.flatten(0, 1), target.flatten())
    return dict(loss_embed=embed_weight * embed / max(batch, 1),
                loss_seediness=seediness_weight * cls / max(batch, 1))


def select_seeds(seediness: Tensor, embeddings: Tensor, max_seeds: int, alpha: float = 0.3,
                 min_seediness: float = 0.0) -> Tensor:
    """Greedy seeds: the first maximises ``S``, each next ``S(p) * D(p)^alpha``.

    Sequential by definition (each seed depends on the earlier ones); every step is vectorised
    over pixels. Stops at ``max_seeds`` or when the best remaining product is 0.

    Args:
        seediness: (P,) float in [0, 1].
        embeddings: (P, D) float.
        max_seeds: N at most.
        alpha: diversity exponent (paper 0.3).
        min_seediness: pixels below this are never seeds.

    Returns:
        (N,) long pixel indices in selection order.
    """
    score = torch.where(seediness >= min_seediness, seediness, torch.zeros_like(seediness))
    if score.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=seediness.device)
    seeds = [int(score.argmax())]
    if float(score[seeds[0]]) <= 0:
        return torch.zeros(0, dtype=torch.long, device=seediness.device)
    diversity = (embeddings - embeddings[seeds[0]]).pow(2).sum(1)
    for _ in range(max_seeds - 1):
        value = score * diversity.clamp(min=0).pow(alpha)
        best = int(value.argmax())
        if float(value[best]) <= 0:
            break
        seeds.append(best)
        diversity = torch.minimum(diversity, (embeddings - embeddings[best]).pow(2).sum(1))
    return torch.tensor(seeds, dtype=torch.long, device=seediness.device)


def metric_seediness_inference(embeddings: Tensor, seediness_logits: Tensor,
                               thresholds: Sequence[float] = PAPER_THRESHOLDS,
                               max_seeds: int = 100, alpha: float = 0.3,
                               min_seediness: float = 0.0, min_pixels: int = 1
                               ) -> Tuple[Tensor, Tensor, Tensor]:
    """Instances of one image.

    Args:
        embeddings: (D, H, W) float.
        seediness_logits: (L * (K + 1), H, W) float.
        thresholds, max_seeds, alpha, min_seediness: see :func:`select_seeds`.
        min_pixels: smaller masks are dropped.

    Returns:
        masks (N, H, W) bool, labels (N,) long in [0, K), scores (N,) float.
    """
    height, width = embeddings.shape[-2:]
    num_thr = len(thresholds)
    emb = embeddings.flatten(1).t()  # P, D
    prob = torch.softmax(seediness_logits.flatten(1).view(num_thr, -1, emb.shape[0]), 1)
    fg = prob[:, 1:]  # L, K, P
    seediness = fg.flatten(0, 1).max(0).values  # P
    seeds = select_seeds(seediness, emb, max_seeds, alpha, min_seediness)
    best = fg[:, :, seeds].flatten(0, 1).max(0)  # over (l, c)
    scores, flat = best.values, best.indices
    level, labels = flat // fg.shape[1], flat % fg.shape[1]
    tau = torch.as_tensor(list(thresholds), dtype=emb.dtype, device=emb.device)[level]
    masks = pair_similarity(emb[seeds], emb) >= tau[:, None]  # N, P
    keep = masks.sum(1) >= max(min_pixels, 1)
    return masks[keep].view(-1, height, width), labels[keep], scores[keep]


class SeedinessOutputs(nn.Module):
    """Embeddings and seediness logits (one (K + 1)-way classification per threshold).

    Args:
        in_channels: C.
        num_classes: K.
        embed_dims: D (paper 64).
        num_thresholds: L.
        in_stride, in_index: see :class:`insplug.core.bottomup.outputs.OutputLayer`.

    Forward: tuple of feature maps -> embeddings (B, D, H, W), seediness logits
    (B, L * (K + 1), H, W).
    """

    def __init__(self, in_channels: int, num_classes: int, embed_dims: int = 64,
                 num_thresholds: int = len(PAPER_THRESHOLDS), in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1)):
        super().__init__()
        self.in_index = tuple(in_index)
        self.embedding = OutputLayer(in_channels, embed_dims, in_stride)
        self.seediness = OutputLayer(in_channels, num_thresholds * (num_classes + 1), in_stride)

    def forward(self, feats: Sequence[Tensor]):
        _check_index(feats, self.in_index, type(self).__name__)
        return (self.embedding(feats[self.in_index[0]]),
                self.seediness(feats[self.in_index[1]]))
