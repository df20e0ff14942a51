"""CountSeg / ILC losses (Cholakkal et al., CVPR 2019), as in the official release.

Shapes: B images, K classes; ``scores`` (B, K) are the peak-stimulated class scores of the
classification branch, ``density`` (B, K, h, w) the density branch; ``counts`` (B, K) the
image-level counts (0 = class absent); ``peaks`` (B, K, h, w) the top-count peak mask.

The image-level count of a class is the spatial MEAN of its density map (the release's
``adaptive_avg_pool2d``; its inference divides the map by h*w so that it sums to the count).
Counts 1 .. t-1 lie in the subitizing range and are regressed; a count >= t (t = 5, the release's
``tl``) only asks for a predicted count of at least t (the lower-count ranking loss
``0.1 * MarginRankingLoss(margin=0)(pred, t, 1) = 0.1 * mean(max(0, t - pred))``).

Stage 1 (``class_reg_loss98_6``, first 20 of 300 epochs on VOC)::

    MultiLabelSoftMargin(scores, counts > 0) + MSE(pred, count | 1 <= count <= t-1)
        + 0.1 * rank(pred | count >= t)

Stage 2 (``class_reg_loss96_7_2``, VOC; ``class_reg_loss96_7_6``, COCO) adds the spatial loss:
BCE-with-logits of the density to 1 at the top-count peaks of classes in the subitizing range,
and to 0 over the whole map of sampled absent classes, whose counts (0) are also regressed.
Absent-class sampling, as released: an absent class is kept when it is present in at least
``rare_fraction`` of the batch, else with probability ``neg_prob`` (VOC: 0.2 and 1.1, i.e. every
absent class; COCO: 0.3 and 0.1, with t = 1 so that every count is ranked).

Empty selections contribute 0 (the release's stage-1 MSE of an empty selection is NaN).
"""
import torch
import torch.nn.functional as F


def top_count_peak_mask(crm, peak_map, counts):
    """The ``count`` highest peaks of each class map (ties at the count-th value included; all
    peaks when a map has fewer; none for count 0) -- ``peak_stimulation_ori_gt``'s mask.

    Args:
        crm: (B, K, h, w); peak_map: (B, K, h, w) bool; counts: (B, K) int.

    Returns:
        (B, K, h, w) bool.
    """
    b, k = crm.shape[:2]
    vals = crm.detach().masked_fill(~peak_map, float('-inf')).flatten(2)
    ranked = vals.sort(dim=2, descending=True).values
    c = counts.long()
    idx = (c - 1).clamp(min=0, max=ranked.shape[2] - 1)
    kth = ranked.gather(2, idx[..., None])[..., 0]
    kth = torch.where(c > 0, kth, torch.full_like(kth, float('inf')))
    kth = torch.where(c > ranked.shape[2], torch.full_like(kth, float('-inf')), kth)
    return peak_map & (crm.detach() >= kth[..., None, None])


def predicted_counts(density):
    """Spatial mean of each density map: (B, K, h, w) -> (B, K)."""
    return density.flatten(2).mean(2)


def _mean_or_zero(x):
    return x.mean() if x.numel() else x.sum()


def ranking_loss(pred, threshold):
    """Lower-count ranking loss: mean of max(0, threshold - pred) (0 for an empty input).

    Args:
        pred: (M,) predicted counts of classes whose count is >= threshold.

    Returns:
        scalar.
    """
    return _mean_or_zero((threshold - pred).clamp(min=0))


def stage1_loss(scores, density, counts, subitizing=5, rank_weight=0.1):
    """Stage-1 loss (see the module docstring).

    Args:
        scores: (B, K); density: (B, K, h, w); counts: (B, K) float.

    Returns:
        dict of scalar terms: loss_cls, loss_count, loss_rank.
    """
    counts = counts.to(density.dtype)
    pred = predicted_counts(density)
    in_range = (counts != 0) & (counts <= subitizing - 1)
    above = counts >= subitizing
    return dict(
        loss_cls=F.multilabel_soft_margin_loss(scores, (counts != 0).to(scores.dtype)),
        loss_count=_mean_or_zero((pred[in_range] - counts[in_range]) ** 2),
        loss_rank=rank_weight * ranking_loss(pred[above], subitizing))


def sample_absent_classes(counts, rare_fraction=0.2, neg_prob=1.1, generator=None):
    """Absent classes whose density is trained to 0 (the release's sampling, see above).

    Args:
        counts: (B, K).

    Returns:
        (B, K) bool.
    """
    absent = counts == 0
    rare = (counts != 0).to(torch.float32).mean(0) < rare_fraction  # (K,)
    rand = torch.rand(counts.shape, generator=generator, device=counts.device)
    return absent & (~(absent & rare[None]) | (rand < neg_prob))


def stage2_loss(scores, density, counts, peak_mask, absent_sampled, subitizing=5,
                rank_weight=0.1):
    """Stage-2 loss (see the module docstring).

    Args:
        scores: (B, K); density: (B, K, h, w); counts: (B, K); peak_mask: (B, K, h, w) bool,
        the top-count peaks of the classification maps (``top_count_peak_mask``);
        absent_sampled: (B, K) bool (``sample_absent_classes``).
        subitizing: t; the VOC release regresses counts 1..t-1 and ranks counts >= t.

    Returns:
        dict of scalar terms: loss_cls, loss_spatial_pos, loss_spatial_neg, loss_count,
        loss_rank.
    """
    counts = counts.to(density.dtype)
    pred = predicted_counts(density)
    in_range = (counts != 0) & (counts <= subitizing - 1)
    above = counts >= subitizing
    pos = in_range[..., None, None] & peak_mask
    neg = absent_sampled[..., None, None].expand_as(density)
    regress = in_range | absent_sampled
    bce = F.binary_cross_entropy_with_logits
    return dict(
        loss_cls=F.multilabel_soft_margin_loss(scores, (counts != 0).to(scores.dtype)),
        loss_spatial_neg=bce(density[neg], torch.zeros_like(density[neg])) if neg.any()
        else density.sum() * 0,
        loss_spatial_pos=bce(density[pos], torch.ones_like(density[pos])) if pos.any()
        else density.sum() * 0,
        loss_count=_mean_or_zero((pred[regress] - counts[regress]) ** 2),
        loss_rank=rank_weight * ranking_loss(pred[above], subitizing))


def count_prediction(scores, density):
    """Counts at inference: round(pred) for classes with a positive score, else 0.

    Args:
        scores: (B, K); density: (B, K, h, w).

    Returns:
        (B, K) float.
    """
    return torch.round((scores > 0).to(density.dtype) * predicted_counts(density))
