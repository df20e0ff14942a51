"""The NMS family behind one interface: plain box NMS, Fast NMS (YOLACT), Matrix NMS (SOLOv2)
and mask-IoU NMS.

Shapes: N candidates, H x W mask grid, G label groups, K candidates kept per group.

Every method takes per-candidate ``scores`` (N,) and ``labels`` (N,) plus the geometry it needs
(``boxes`` (N, 4) as x1, y1, x2, y2 and/or ``masks`` (N, H, W)) and returns
``(keep, new_scores)``: ``keep`` (M,) int64 indices into the N inputs, ordered by decreasing
``new_scores`` (M,). Only Matrix NMS changes scores (decay); the others return the input scores
of the kept candidates. Suppression is per label unless ``class_agnostic=True``.

* :func:`box_nms`: exact greedy NMS on box IoU (torchvision's ``batched_nms``).
* :func:`fast_nms`: YOLACT's relaxation: per label, the ``top_k`` best candidates form an
  IoU matrix whose upper triangle's column maxima decide suppression in one shot (an
  already-suppressed candidate may still suppress).
* :func:`matrix_nms`: SOLOv2's soft, parallel decay of mask scores (linear or Gaussian kernel).
* :func:`mask_nms`: exact greedy NMS on mask IoU, solved in matrix form by iterating
  ``keep_j = not any_i<j (keep_i and IoU_ij > thr)`` from "keep all" to its fixed point (the
  iteration of Cluster-NMS, Zheng et al. 2020), which equals the sequential greedy result.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ['box_iou_matrix', 'mask_iou_matrix', 'box_nms', 'fast_nms', 'matrix_nms',
           'mask_nms', 'NMS_METHODS', 'apply_nms']


# --------------------------------------------------------------------------- IoU matrices
def box_iou_matrix(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of boxes, batched over leading dimensions.

    Args:
        boxes1: (..., N, 4) x1, y1, x2, y2.
        boxes2: (..., M, 4).

    Returns:
        (..., N, M) IoU; pairs with zero union get 0.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * \
        (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * \
        (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def mask_iou_matrix(masks1: Tensor, masks2: Tensor) -> Tensor:
    """Pairwise IoU of binary masks, batched over leading dimensions.

    Args:
        masks1: (..., N, P) flattened masks (bool or {0, 1} float), P = H * W.
        masks2: (..., M, P).

    Returns:
        (..., N, M) float IoU; pairs of two empty masks get 0.
    """
    m1 = masks1.float()
    m2 = masks2.float()
    inter = m1 @ m2.transpose(-1, -2)
    union = m1.sum(-1)[..., :, None] + m2.sum(-1)[..., None, :] - inter
    return inter / union.clamp(min=1.0)


# --------------------------------------------------------------------------- helpers
def _check_inputs(scores: Tensor, labels: Tensor, boxes: Optional[Tensor],
                  masks: Optional[Tensor], need: str) -> None:
    if scores.dim() != 1 or labels.shape != scores.shape:
        raise ValueError(f'scores and labels must both have shape (N,), got '
                         f'{tuple(scores.shape)} and {tuple(labels.shape)}')
    if need == 'boxes':
        if boxes is None or boxes.shape != (scores.numel(), 4):
            raise ValueError(f'boxes must have shape (N, 4) = ({scores.numel()}, 4) for this '
                             f'NMS, got {None if boxes is None else tuple(boxes.shape)}')
    if need == 'masks':
        if masks is None or masks.dim() != 3 or masks.size(0) != scores.numel():
            raise ValueError(f'masks must have shape (N, H, W) with N = {scores.numel()} for '
                             f'this NMS, got {None if masks is None else tuple(masks.shape)}')


def _empty(scores: Tensor) -> Tuple[Tensor, Tensor]:
    return scores.new_zeros(0, dtype=torch.long), scores.new_zeros(0)


def _finish(keep: Tensor, scores: Tensor, max_num: int) -> Tuple[Tensor, Tensor]:
    """Sort ``keep`` (M,) by ``scores`` (M,) descending and truncate to ``max_num``."""
    scores, order = scores.sort(descending=True)
    keep = keep[order]
    if max_num > 0:
        keep, scores = keep[:max_num], scores[:max_num]
    return keep, scores


def group_top_k(scores: Tensor, labels: Tensor, top_k: int) -> Tensor:
    """Per-label table of the ``top_k`` best candidates.

    Args:
        scores: (N,) scores.
        labels: (N,) int labels.
        top_k: candidates kept per label (<= 0: all).

    Returns:
        (G, K) int64 indices into N, each row one label's candidates by decreasing score,
        padded with -1; G = number of distinct labels, K = min(top_k, largest group).
    """
    order = scores.argsort(descending=True)
    order = order[torch.sort(labels[order], stable=True).indices]  # by label, then score
    _, group, counts = torch.unique_consecutive(labels[order], return_inverse=True,
                                                return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=scores.device) - starts[group]
    width = int(counts.max())
    if top_k > 0:
        width = min(width, top_k)
    sel = rank < width
    table = torch.full((counts.numel(), width), -1, dtype=torch.long, device=scores.device)
    table[group[sel], rank[sel]] = order[sel]
    return table


# --------------------------------------------------------------------------- methods
def box_nms(scores: Tensor, labels: Tensor, boxes: Optional[Tensor] = None,
            masks: Optional[Tensor] = None, iou_thr: float = 0.5, max_num: int = -1,
            class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """Greedy NMS on box IoU (a candidate is dropped when IoU > ``iou_thr`` with a kept,
    higher-scored candidate of its label).

    Args:
        scores: (N,); labels: (N,); boxes: (N, 4); masks: unused.
        iou_thr: IoU above which the lower-scored box is suppressed.
        max_num: keep at most this many (<= 0: all).
        class_agnostic: suppress across labels.

    Returns:
        keep (M,) int64, scores (M,).
    """
    _check_inputs(scores, labels, boxes, masks, 'boxes')
    if scores.numel() == 0:
        return _empty(scores)
    groups = torch.zeros_like(labels) if class_agnostic else labels
    keep = batched_nms(boxes.float(), scores.float(), groups, iou_thr)
    return _finish(keep, scores[keep], max_num)


def fast_nms(scores: Tensor, labels: Tensor, boxes: Optional[Tensor] = None,
             masks: Optional[Tensor] = None, iou_thr: float = 0.5, top_k: int = 200,
             max_num: int = -1, use_masks: bool = False,
             class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """YOLACT's Fast NMS.

    Per label, the ``top_k`` highest-scored candidates are sorted; with ``X`` their IoU matrix
    (K, K), candidate j is kept iff ``max_{i<j} X_ij <= iou_thr`` (upper triangle, column max).
    Candidates beyond ``top_k`` in their label are dropped.

    Args:
        scores: (N,); labels: (N,); boxes: (N, 4) (box IoU) or masks: (N, H, W) binary
            (mask IoU, with ``use_masks=True``).
        iou_thr: suppression threshold (YOLACT: 0.5).
        top_k: candidates considered per label (YOLACT: 200; <= 0: all).
        max_num: keep at most this many overall (YOLACT: 100; <= 0: all).
        use_masks: compute the IoU from masks instead of boxes.
        class_agnostic: one group for all labels (YOLACT's cross-class option).

    Returns:
        keep (M,) int64, scores (M,).
    """
    _check_inputs(scores, labels, boxes, masks, 'masks' if use_masks else 'boxes')
    if scores.numel() == 0:
        return _empty(scores)
    groups = torch.zeros_like(labels) if class_agnostic else labels
    table = group_top_k(scores, groups, top_k)  # (G, K)
    valid = table >= 0
    safe = table.clamp(min=0)
    if use_masks:
        geom = masks.flatten(1)[safe]  # (G, K, P)
        iou = mask_iou_matrix(geom, geom)
    else:
        geom = boxes.float()[safe]  # (G, K, 4)
        iou = box_iou_matrix(geom, geom)
    iou = iou * (valid[:, :, None] & valid[:, None, :])
    iou_max = iou.triu(diagonal=1).max(dim=1).values  # (G, K)
    kept = valid & (iou_max <= iou_thr)
    keep = table[kept]
    return _finish(keep, scores[keep], max_num)


def matrix_nms(scores: Tensor, labels: Tensor, boxes: Optional[Tensor] = None,
               masks: Optional[Tensor] = None, kernel: str = 'gaussian', sigma: float = 2.0,
               nms_pre: int = -1, filter_thr: float = -1.0, max_num: int = -1,
               class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """SOLOv2's Matrix NMS: every candidate's score decays by its overlap with higher-scored
    candidates of its label, compensated by how much those were themselves suppressed.

    With candidates sorted by score, ``IoU_ij`` (i < j, same label) and
    ``comp_i = max_{k<i} IoU_ki``, the decay of j is ``min_{i<j} f(IoU_ij) / f(comp_i)``,
    ``f(x) = 1 - x`` (linear) or ``exp(-sigma * x^2)`` (Gaussian, SOLOv2's released form).

    Args:
        scores: (N,); labels: (N,); masks: (N, H, W) binary; boxes: unused.
        kernel: 'gaussian' or 'linear'.
        sigma: Gaussian kernel parameter (SOLOv2: 2.0).
        nms_pre: decay only the ``nms_pre`` best candidates (<= 0: all).
        filter_thr: drop candidates whose decayed score is below this (<= 0: none).
        max_num: keep at most this many (<= 0: all).
        class_agnostic: decay across labels.

    Returns:
        keep (M,) int64, decayed scores (M,).
    """
    _check_inputs(scores, labels, boxes, masks, 'masks')
    if kernel not in ('gaussian', 'linear'):
        raise ValueError(f"kernel must be 'gaussian' or 'linear', got {kernel!r}")
    if scores.numel() == 0:
        return _empty(scores)
    sorted_scores, order = scores.sort(descending=True)
    if nms_pre > 0:
        sorted_scores, order = sorted_scores[:nms_pre], order[:nms_pre]
    n = order.numel()
    iou = mask_iou_matrix(masks[order].flatten(1), masks[order].flatten(1)).triu(diagonal=1)
    if not class_agnostic:
        lab = labels[order]
        iou = iou * (lab[:, None] == lab[None, :])
    comp = iou.max(dim=0).values  # (n,) max IoU of each candidate with higher ones
    if kernel == 'gaussian':
        decay = torch.exp(-sigma * (iou.pow(2) - comp.pow(2)[:, None]))
    else:
        decay = (1.0 - iou) / (1.0 - comp[:, None]).clamp(min=1e-6)
    # rows i >= j contribute nothing: their ratio is f(0)/f(comp_i) >= 1 and min is capped at 1
    tri = torch.ones(n, n, dtype=torch.bool, device=iou.device).triu(diagonal=1)
    decay = torch.where(tri, decay, torch.ones_like(decay))
    coef = decay.min(dim=0).values.clamp(max=1.0)
    new_scores = sorted_scores * coef
    if filter_thr > 0:
        sel = new_scores >= filter_thr
        order, new_scores = order[sel], new_scores[sel]
    return _finish(order, new_scores, max_num)


def mask_nms(scores: Tensor, labels: Tensor, boxes: Optional[Tensor] = None,
             masks: Optional[Tensor] = None, iou_thr: float = 0.5, nms_pre: int = -1,
             max_num: int = -1, class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """Exact greedy NMS on mask IoU, solved by fixed-point iteration in matrix form.

    Args:
        scores: (N,); labels: (N,); masks: (N, H, W) binary; boxes: unused.
        iou_thr: mask IoU above which the lower-scored mask is suppressed.
        nms_pre: consider only the ``nms_pre`` best candidates (<= 0: all).
        max_num: keep at most this many (<= 0: all).
        class_agnostic: suppress across labels.

    Returns:
        keep (M,) int64, scores (M,).
    """
    _check_inputs(scores, labels, boxes, masks, 'masks')
    if scores.numel() == 0:
        return _empty(scores)
    sorted_scores, order = scores.sort(descending=True)
    if nms_pre > 0:
        sorted_scores, order = sorted_scores[:nms_pre], order[:nms_pre]
    iou = mask_iou_matrix(masks[order].flatten(1), masks[order].flatten(1)).triu(diagonal=1)
    if not class_agnostic:
        lab = labels[order]
        iou = iou * (lab[:, None] == lab[None, :])
    suppresses = (iou > iou_thr).float()  # (n, n): i may suppress j (i < j)
    keep = torch.ones(order.numel(), dtype=torch.bool, device=scores.device)
    # keep_j = not any_i (keep_i and S_ij); the first t entries are final after t steps.
    for _ in range(order.numel()):
        new_keep = (keep.float() @ suppresses) == 0
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return _finish(order[keep], sorted_scores[keep], max_num)


NMS_METHODS = dict(box=box_nms, fast=fast_nms, matrix=matrix_nms, mask=mask_nms)


def apply_nms(method: str, scores: Tensor, labels: Tensor, boxes: Optional[Tensor] = None,
              masks: Optional[Tensor] = None, **params) -> Tuple[Tensor, Tensor]:
    """Run the NMS named ``method`` ('box', 'fast', 'matrix' or 'mask') with ``params``.

    Args:
        scores: (N,); labels: (N,); boxes: (N, 4) or None; masks: (N, H, W) or None.

    Returns:
        keep (M,) int64, scores (M,) (see the module docstring).
    """
    if method not in NMS_METHODS:
        raise ValueError(f'unknown NMS method {method!r}: choose one of {sorted(NMS_METHODS)}')
    return NMS_METHODS[method](scores, labels, boxes=boxes, masks=masks, **params)
