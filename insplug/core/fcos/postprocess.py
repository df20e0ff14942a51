"""FCOS inference: candidate selection, scores, box decoding, NMS, and the final paste-time
box handling, as the official releases do it.

Shape shorthand: P_l points of level l of one image, K classes, M candidates, D detections.

Candidate selection (per image and level), ``candidate_mode``:

* ``'threshold_topk'`` (AdelaiDet, FCOS-official, centermask2): every (point, class) pair with
  ``s > score_thr`` is a candidate, where ``s = cls * ctr`` with ``thresh_with_ctr`` (AdelaiDet
  ``THRESH_WITH_CTR``, True in BlendMask) and ``s = cls`` otherwise; then at most ``nms_pre``
  of them are kept by the largest ``cls * ctr``.
* ``'point_topk'`` (mmdet 1.x / PolarMask): the ``nms_pre`` points with the largest
  ``max_k(cls * ctr)`` are kept, then pairs with ``cls > score_thr`` are candidates.

Reported score (``score``): ``'sqrt'`` -> ``sqrt(cls * ctr)`` (AdelaiDet, FCOS-official,
centermask2); ``'product'`` -> ``cls * ctr`` (mmdet, PolarMask); ``'cls'`` -> ``cls``.

Then the levels are concatenated, class-aware NMS (torchvision ``batched_nms`` in float32, like
detectron2) at ``nms_thr`` runs on the *score* field, and at most ``max_per_img`` detections are
kept with detectron2's kthvalue rule (``score >= kth largest``: ties can keep a few more).
Boxes are not clipped here (AdelaiDet does not clip before the mask branch).

At paste time (detectron2 ``detector_postprocess``): boxes are scaled to the output size,
clipped to ``[0, W] x [0, H]``, boxes with zero width or height are dropped, and the mask
probabilities are pasted into the clipped boxes and binarised with ``>= mask_thr`` (0.5).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ['select_candidates', 'final_scores', 'decode_ltrb', 'nms_kthvalue',
           'fcos_predict_single', 'rescale_clip_boxes']


def select_candidates(cls_prob: Tensor, ctr_prob: Tensor, score_thr: float = 0.05,
                      nms_pre: int = 1000, thresh_with_ctr: bool = False,
                      candidate_mode: str = 'threshold_topk') -> Tuple[Tensor, Tensor, Tensor]:
    """Candidate (point, class) pairs of one level of one image.

    Args:
        cls_prob: (P_l, K) sigmoid class probabilities. ctr_prob: (P_l,) sigmoid centerness.
        score_thr: ``INFERENCE_TH_TEST`` (0.05). nms_pre: ``PRE_NMS_TOPK_TEST`` (1000).
        thresh_with_ctr: threshold ``cls * ctr`` instead of ``cls`` ('threshold_topk' only).
        candidate_mode: 'threshold_topk' or 'point_topk' (module docstring).

    Returns:
        point_inds (M,) long, labels (M,) long, products (M,) ``cls * ctr``.
    """
    prod = cls_prob * ctr_prob[:, None]
    if candidate_mode == 'threshold_topk':
        cand = (prod if thresh_with_ctr else cls_prob) > score_thr
        nz = cand.nonzero()
        point_inds, labels = nz[:, 0], nz[:, 1]
        scores = prod[cand]
        if scores.numel() > nms_pre:
            scores, top = scores.topk(nms_pre, sorted=False)
            point_inds, labels = point_inds[top], labels[top]
        return point_inds, labels, scores
    if candidate_mode == 'point_topk':
        keep_pts = torch.arange(cls_prob.shape[0], device=cls_prob.device)
        if 0 < nms_pre < cls_prob.shape[0]:
            keep_pts = prod.max(dim=1).values.topk(nms_pre).indices
        cand = cls_prob[keep_pts] > score_thr
        nz = cand.nonzero()
        point_inds, labels = keep_pts[nz[:, 0]], nz[:, 1]
        return point_inds, labels, prod[point_inds, labels]
    raise ValueError(f"candidate_mode must be 'threshold_topk' or 'point_topk', "
                     f"got {candidate_mode!r}")


def final_scores(products: Tensor, cls_prob: Optional[Tensor] = None,
                 score: str = 'sqrt') -> Tensor:
    """Reported detection score.

    Args:
        products: (M,) ``cls * ctr``. cls_prob: (M,) ``cls`` (needed for score='cls').
        score: 'sqrt' | 'product' | 'cls'.

    Returns:
        (M,).
    """
    if score == 'sqrt':
        return torch.sqrt(products)
    if score == 'product':
        return products
    if score == 'cls':
        if cls_prob is None:
            raise ValueError("score='cls' needs cls_prob")
        return cls_prob
    raise ValueError(f"score must be 'sqrt', 'product' or 'cls', got {score!r}")


def decode_ltrb(points: Tensor, ltrb: Tensor) -> Tensor:
    """Boxes from points and (l, t, r, b) distances in pixels.

    Args:
        points: (M, 2). ltrb: (M, 4).

    Returns:
        (M, 4) x1, y1, x2, y2 (not clipped).
    """
    return torch.stack((points[:, 0] - ltrb[:, 0], points[:, 1] - ltrb[:, 1],
                        points[:, 0] + ltrb[:, 2], points[:, 1] + ltrb[:, 3]), dim=1)


def nms_kthvalue(boxes: Tensor, scores: Tensor, labels: Tensor, nms_thr: float = 0.6,
                 max_per_img: int = 100) -> Tensor:
    """Class-aware NMS then detectron2's kthvalue top-k (AdelaiDet ``select_over_all_levels``).

    Args:
        boxes: (M, 4). scores: (M,). labels: (M,).
        nms_thr: IoU threshold (``NMS_TH`` 0.6); <= 0 skips NMS.
        max_per_img: ``POST_NMS_TOPK_TEST`` (100); <= 0 keeps all.

    Returns:
        (D,) long indices into the M candidates, by decreasing score.
    """
    if nms_thr > 0:
        keep = batched_nms(boxes.float(), scores.float(), labels, nms_thr)
    else:
        keep = torch.arange(scores.numel(), device=scores.device)
    n = keep.numel()
    if n > max_per_img > 0:
        kept_scores = scores[keep]
        thresh, _ = torch.kthvalue(kept_scores.cpu(), n - max_per_img + 1)
        keep = keep[kept_scores >= thresh.item()]
    return keep


def fcos_predict_single(cls_logits: Sequence[Tensor], reg: Sequence[Tensor],
                        ctr_logits: Sequence[Tensor], points: Sequence[Tensor],
                        score_thr: float = 0.05, nms_pre: int = 1000,
                        thresh_with_ctr: bool = False, candidate_mode: str = 'threshold_topk',
                        score: str = 'sqrt', nms_thr: float = 0.6, max_per_img: int = 100,
                        clip_hw: Optional[Tuple[int, int]] = None,
                        clip_offset: int = 1) -> Dict[str, Tensor]:
    """Detections of one image from the per-level head outputs.

    Args:
        cls_logits: L tensors (P_l, K). reg: L tensors (P_l, 4) (l, t, r, b) in pixels (already
            multiplied by the stride when the targets are stride-normalised).
        ctr_logits: L tensors (P_l,). points: L tensors (P_l, 2).
        Other args: :func:`select_candidates`, :func:`final_scores`, :func:`nms_kthvalue`.
        clip_hw: (H, W) to clip the boxes to before NMS (FCOS-official / maskrcnn-benchmark
            ``clip_to_image``, mmdet 1.x ``distance2bbox(max_shape)``: x in [0, W - clip_offset]);
            None (AdelaiDet, centermask2) leaves them unclipped.

    Returns:
        dict with ``bboxes`` (D, 4) unclipped, ``scores`` (D,), ``labels`` (D,),
        ``point_inds`` (D,) index into the concatenation of all levels' points,
        ``levels`` (D,).
    """
    boxes, scores, labels, pinds, levels = [], [], [], [], []
    offset = 0
    for lvl, (c, r, t, p) in enumerate(zip(cls_logits, reg, ctr_logits, points)):
        cls_prob, ctr_prob = c.sigmoid(), t.sigmoid()
        pi, lab, prod = select_candidates(cls_prob, ctr_prob, score_thr, nms_pre,
                                          thresh_with_ctr, candidate_mode)
        b = decode_ltrb(p[pi], r[pi])
        if clip_hw is not None:
            h, w = clip_hw
            b = torch.stack((b[:, 0].clamp(0, w - clip_offset), b[:, 1].clamp(0, h - clip_offset),
                             b[:, 2].clamp(0, w - clip_offset), b[:, 3].clamp(0, h - clip_offset)),
                            dim=1)
        boxes.append(b)
        scores.append(final_scores(prod, cls_prob[pi, lab], score))
        labels.append(lab)
        pinds.append(pi + offset)
        levels.append(torch.full_like(pi, lvl))
        offset += p.shape[0]
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    pinds, levels = torch.cat(pinds), torch.cat(levels)
    keep = nms_kthvalue(boxes, scores, labels, nms_thr, max_per_img)
    return {'bboxes': boxes[keep], 'scores': scores[keep], 'labels': labels[keep],
            'point_inds': pinds[keep], 'levels': levels[keep]}


def rescale_clip_boxes(boxes: Tensor, scale_xy: Tuple[float, float],
                       out_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """detectron2 ``detector_postprocess`` box handling.

    Args:
        boxes: (D, 4) in the network input's pixels.
        scale_xy: (out_w / in_w, out_h / in_h).
        out_hw: (H, W) output image size.

    Returns:
        boxes (D, 4) scaled and clipped to [0, W] x [0, H]; keep (D,) bool, False where the
        clipped box has zero width or height (detectron2 drops those).
    """
    sx, sy = scale_xy
    b = boxes * boxes.new_tensor([sx, sy, sx, sy])
    h, w = out_hw
    b = torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h),
                     b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), dim=1)
    keep = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)
    return b, keep
