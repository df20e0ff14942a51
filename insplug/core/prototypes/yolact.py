"""YOLACT / YOLACT++ box branch, losses and inference as released (dbolya/yolact).

Shapes: B images, P priors (anchors) of one image over all levels, K foreground classes,
G ground-truth objects of one image (crowds apart), C crowd boxes, k prototypes, H x W prototype
grid, N detections / positives.

Coordinates are *relative* to the network input (x / input width, y / input height), as in the
release: priors are centre-size ``(cx, cy, w, h)``, every other box is ``(x1, y1, x2, y2)``.
Class layout: foreground ``0..K-1`` and background ``K`` (mmdet's convention; the release puts
the background first, the converter permutes the classifier channels). Matching labels:
``0..K-1`` positive, ``K`` negative, ``-1`` neutral (ignored).

Release behaviour reproduced (layers/box_utils.py, layers/modules/multibox_loss.py,
layers/functions/detection.py, layers/output_utils.py, yolact.py ``make_priors``):

* priors: per location (row-major), per scale, per aspect ratio ``a``: ``w = s * sqrt(a) / max_size``
  and ``h = s / sqrt(a) / max_size`` (``use_pixel_scales``, ``preapply_sqrt=False``); YOLACT
  (``use_square_anchors=True``) sets ``h = w`` (the "square anchors" bug kept for the checkpoints),
  YOLACT++ does not;
* matching: IoU with the point-form priors; positives >= 0.5, negatives < 0.4, neutral between;
  each GT forces its best prior (greedy, best overlap first); priors that are not positive and
  lie > 0.7 inside a crowd box (intersection / prior area) become neutral;
* box targets: SSD encoding with variances (0.1, 0.2); box loss smooth-L1 (beta 1) summed;
* OHEM: negatives ranked by their background cross-entropy, ``3 x num_pos`` per image (at most
  P - 1), classification cross-entropy summed over positives and mined negatives;
* mask loss: per positive, BCE of the cropped (GT box, padding 1) sigmoid mask summed over the
  grid / (box w * H) / (box h * W) * H * W; at most ``masks_to_train`` random positives per image,
  whose sum is scaled by ``num_pos / masks_to_train``; times ``mask_alpha / (H * W)``;
* box, class, mask and mask-IoU losses are divided by the batch's number of positives; the
  semantic segmentation loss (sum of BCE over classes and pixels / (h * w)) by the batch size;
* YOLACT++ mask-IoU loss: smooth-L1 (beta 1) sum of the predicted IoU at the GT class against
  the IoU of the binarised (> 0.5) cropped mask with its GT, over positives whose GT covers more
  than ``discard_mask_area`` grid pixels; the mask-IoU net sees the *non-detached* masks;
* inference: softmax; anchors whose best foreground score > 0.05 are candidates in *every*
  class; per class Fast NMS over its 200 best (no second score threshold); 100 best overall.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.nms import fast_nms
from insplug.core.prototypes.assembly import downsample_gt_masks, semantic_targets_multilabel
from insplug.core.prototypes.mask_rescoring import gather_class_iou

__all__ = ['make_priors', 'point_form', 'encode_boxes', 'decode_boxes', 'match_priors',
           'ohem_conf_loss', 'box_loss', 'proto_mask_losses', 'semantic_seg_loss',
           'fast_nms_candidates', 'sanitize_boxes', 'VARIANCES', 'match_batch',
           'box_branch_losses', 'mask_iou_loss', 'mask_branch_losses', 'detect',
           'assemble_masks', 'upsample_masks', 'output_boxes', 'postprocess']

VARIANCES = (0.1, 0.2)


# --------------------------------------------------------------------------- priors and boxes
def make_priors(feat_sizes: Sequence[Tuple[int, int]], scales: Sequence[Sequence[float]],
                aspect_ratios: Sequence[float], max_size: float, square: bool,
                device=None, dtype=torch.float32) -> Tensor:
    """Priors of all levels in the release's order.

    Args:
        feat_sizes: per level (h_l, w_l).
        scales: per level the anchor scales in pixels of a ``max_size`` input (YOLACT
            ``[[24], [48], ...]``; YOLACT++ three per level).
        aspect_ratios: ``[1, 1/2, 2]``.
        max_size: the input size the scales refer to (550).
        square: YOLACT's ``use_square_anchors`` (h = w).

    Returns:
        (P, 4) relative (cx, cy, w, h), P = sum_l h_l * w_l * len(scales[l]) * len(ratios);
        per location, scale-major then aspect ratio.
    """
    out = []
    for (h, w), lvl_scales in zip(feat_sizes, scales):
        s = torch.tensor([float(x) for x in lvl_scales], dtype=torch.float64)
        ar = torch.tensor([math.sqrt(a) for a in aspect_ratios], dtype=torch.float64)
        pw = (s[:, None] * ar[None, :] / max_size).reshape(-1)          # (S * A,)
        ph = pw.clone() if square else (s[:, None] / ar[None, :] / max_size).reshape(-1)
        ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing='ij')                   # (h, w)
        n = pw.numel()
        pri = torch.stack([cx[..., None].expand(h, w, n), cy[..., None].expand(h, w, n),
                           pw.expand(h, w, n), ph.expand(h, w, n)], -1)
        out.append(pri.reshape(-1, 4))
    return torch.cat(out).to(device=device, dtype=dtype)


def point_form(priors: Tensor) -> Tensor:
    """(P, 4) centre-size -> (P, 4) x1, y1, x2, y2."""
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)


def encode_boxes(matched: Tensor, priors: Tensor) -> Tensor:
    """SSD encoding. matched: (P, 4) x1y1x2y2; priors: (P, 4) cx, cy, w, h -> (P, 4) deltas."""
    g_cxcy = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (VARIANCES[0] *
                                                                       priors[:, 2:])
    g_wh = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / VARIANCES[1]
    return torch.cat([g_cxcy, g_wh], 1)


def decode_boxes(loc: Tensor, priors: Tensor) -> Tensor:
    """Inverse of :func:`encode_boxes`. loc: (..., P, 4); priors: (P, 4) -> (..., P, 4) x1y1x2y2
    (not clipped)."""
    cxcy = priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:]
    wh = priors[:, 2:] * torch.exp(loc[..., 2:] * VARIANCES[1])
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1)


def _jaccard(a: Tensor, b: Tensor) -> Tensor:
    """(A, 4) x (B, 4) -> (A, B) IoU, no clamping of the areas (the release's ``jaccard``)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter)


def _inside_fraction(a: Tensor, b: Tensor) -> Tensor:
    """(A, 4) x (B, 4) -> (A, B) intersection / area of a (the release's crowd IoU)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]


@torch.no_grad()
def match_priors(gt_boxes: Tensor, gt_labels: Tensor, priors: Tensor, num_classes: int,
                 crowd_boxes: Optional[Tensor] = None, pos_iou_thr: float = 0.5,
                 neg_iou_thr: float = 0.4, crowd_iou_thr: float = 0.7
                 ) -> Tuple[Tensor, Tensor]:
    """The release's ``match`` for one image.

    Args:
        gt_boxes: (G, 4) relative x1y1x2y2 (G >= 1); gt_labels: (G,) in [0, K).
        priors: (P, 4) centre-size.
        num_classes: K.
        crowd_boxes: (C, 4) relative, or None.
        pos_iou_thr, neg_iou_thr, crowd_iou_thr: 0.5, 0.4, 0.7 (YOLACT).

    Returns:
        labels (P,) int64: class of positives, K for negatives, -1 for neutral;
        gt_inds (P,) int64: the GT index each prior is matched to (meaningful for positives).
    """
    pri = point_form(priors)
    overlaps = _jaccard(gt_boxes, pri)                          # (G, P)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    for _ in range(overlaps.size(0)):   # each GT forces its best prior, best overlap first
        best_prior_overlap, best_prior_idx = overlaps.max(1)
        j = best_prior_overlap.max(0)[1]
        i = best_prior_idx[j]
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_truth_overlap[i] = 2
        best_truth_idx[i] = j
    labels = gt_labels.long()[best_truth_idx]
    labels[best_truth_overlap < pos_iou_thr] = -1
    labels[best_truth_overlap < neg_iou_thr] = num_classes
    if crowd_boxes is not None and crowd_boxes.numel() and crowd_iou_thr < 1:
        crowd = _inside_fraction(pri, crowd_boxes).max(1).values
        not_pos = (labels == -1) | (labels == num_classes)
        labels[not_pos & (crowd > crowd_iou_thr)] = -1
    return labels, best_truth_idx


# --------------------------------------------------------------------------- losses
def ohem_conf_loss(cls_scores: Tensor, labels: Tensor, neg_pos_ratio: int = 3) -> Tensor:
    """Summed softmax cross-entropy over positives and mined hard negatives.

    Args:
        cls_scores: (B, P, K + 1) logits, background last.
        labels: (B, P) matching labels (K background, -1 neutral).
        neg_pos_ratio: negatives per positive (3).

    Returns:
        scalar: sum over the batch (divide by the number of positives outside).
    """
    b, p, c = cls_scores.shape
    bg = c - 1
    pos = (labels >= 0) & (labels < bg)
    with torch.no_grad():
        flat = cls_scores.reshape(-1, c)
        mining = (torch.logsumexp(flat, 1) - flat[:, bg]).view(b, p)
        mining[pos] = 0
        mining[labels < 0] = 0
        _, loss_idx = mining.sort(1, descending=True)
        _, idx_rank = loss_idx.sort(1)
        num_neg = torch.clamp(neg_pos_ratio * pos.long().sum(1, keepdim=True), max=p - 1)
        neg = idx_rank < num_neg
        neg[pos] = False
        neg[labels < 0] = False
    sel = pos | neg
    return F.cross_entropy(cls_scores[sel], labels[sel], reduction='sum')


def box_loss(bbox_preds: Tensor, bbox_targets: Tensor) -> Tensor:
    """Summed smooth-L1 (beta 1). bbox_preds, bbox_targets: (N, 4) -> scalar."""
    return F.smooth_l1_loss(bbox_preds, bbox_targets, reduction='sum')


def _crop_rel(masks: Tensor, boxes: Tensor, padding: int = 1) -> Tensor:
    """The release's ``crop``: masks (N, H, W), boxes (N, 4) relative -> (N, H, W) zeroed outside
    ``[x1 * W - padding, x2 * W + padding)`` (clamped to the grid), same for rows."""
    n, h, w = masks.shape
    x1 = torch.minimum(boxes[:, 0] * w, boxes[:, 2] * w)
    x2 = torch.maximum(boxes[:, 0] * w, boxes[:, 2] * w)
    y1 = torch.minimum(boxes[:, 1] * h, boxes[:, 3] * h)
    y2 = torch.maximum(boxes[:, 1] * h, boxes[:, 3] * h)
    x1, x2 = (x1 - padding).clamp(min=0), (x2 + padding).clamp(max=w)
    y1, y2 = (y1 - padding).clamp(min=0), (y2 + padding).clamp(max=h)
    cols = torch.arange(w, device=masks.device, dtype=x1.dtype)
    rows = torch.arange(h, device=masks.device, dtype=x1.dtype)
    keep_x = (cols[None] >= x1[:, None]) & (cols[None] < x2[:, None])
    keep_y = (rows[None] >= y1[:, None]) & (rows[None] < y2[:, None])
    return masks * (keep_y[:, :, None] & keep_x[:, None, :]).to(masks.dtype)


def proto_mask_losses(protos: Tensor, coeffs: List[Tensor], gt_inds: List[Tensor],
                      gt_boxes: List[Tensor], gt_masks: List[Tensor], gt_labels: List[Tensor],
                      masks_to_train: int = 100, crop_padding: int = 1,
                      discard_mask_area: float = -1, with_mask_iou: bool = False
                      ) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor, Tensor]]]:
    """The release's ``lincomb_mask_loss`` (YOLACT's mask loss and YOLACT++'s mask-IoU inputs).

    Args:
        protos: (B, k, H, W) prototypes (after their ReLU).
        coeffs: per image (N_b, k) coefficients of the positives (tanh applied).
        gt_inds: per image (N_b,) index of each positive's GT.
        gt_boxes: per image (G_b, 4) relative boxes (crowds excluded).
        gt_masks: per image (G_b, H, W) GT masks already on the prototype grid, {0, 1}.
        gt_labels: per image (G_b,) classes.
        masks_to_train: random positives kept per image (100); their summed loss is scaled by
            N_b / masks_to_train. The subset is ``torch.randperm(N_b)[:masks_to_train]``.
        crop_padding: 1.
        discard_mask_area: YOLACT++ keeps for the mask-IoU loss only positives whose GT covers
            more than this many grid pixels (25); <= 0 keeps all.
        with_mask_iou: also return the mask-IoU net inputs.

    Returns:
        loss: scalar, the summed per-positive losses (multiply by mask_alpha and divide by the
            number of positives outside);
        maskiou: None, or ``(inputs (M, 1, H, W) cropped probabilities, not detached; targets
            (M,) IoU of the binarised masks with their GT; labels (M,))``.
    """
    b, k, h, w = protos.shape
    loss = protos.sum() * 0
    iou_in, iou_t, iou_l = [], [], []
    for i in range(b):
        if gt_inds[i].numel() == 0:
            continue
        coef, inds = coeffs[i], gt_inds[i]
        old_num = coef.size(0)
        if old_num > masks_to_train > 0:
            select = torch.randperm(old_num)[:masks_to_train].to(coef.device)
            coef, inds = coef[select], inds[select]
        num = coef.size(0)
        mask_t = gt_masks[i][inds].to(protos.dtype)                     # (N, H, W)
        boxes = gt_boxes[i][inds]                                       # (N, 4) relative
        pred = torch.sigmoid(coef @ protos[i].reshape(k, h * w)).reshape(num, h, w)
        pred = _crop_rel(pred, boxes, crop_padding)
        bce = F.binary_cross_entropy(pred.clamp(0, 1), mask_t, reduction='none')
        bw = (boxes[:, 2] - boxes[:, 0]) * w
        bh = (boxes[:, 3] - boxes[:, 1]) * h
        per = bce.sum((1, 2)) / bw / bh * (h * w)
        if old_num > num:
            per = per * (old_num / num)
        loss = loss + per.sum()
        if with_mask_iou:
            sel = mask_t.sum((1, 2)) > discard_mask_area if discard_mask_area > 0 else \
                torch.ones(num, dtype=torch.bool, device=pred.device)
            if not sel.any():
                continue
            p, t = pred[sel], mask_t[sel]
            binar = (p > 0.5).to(p.dtype)
            inter = (binar * t).sum((1, 2))
            union = binar.sum((1, 2)) + t.sum((1, 2)) - inter
            iou_in.append(p[:, None])
            iou_t.append((inter / union).detach())
            iou_l.append(gt_labels[i][inds][sel])
    maskiou = None
    if with_mask_iou and iou_in:
        maskiou = (torch.cat(iou_in), torch.cat(iou_t), torch.cat(iou_l))
    return loss, maskiou


def semantic_seg_loss(segm: Tensor, targets: Tensor) -> Tensor:
    """Release's semantic loss: BCE summed over classes and pixels / (h * w), summed over images
    (divide by the batch size outside).

    Args:
        segm: (B, K, h, w) logits; targets: (B, K, h, w) {0, 1}.
    """
    h, w = segm.shape[-2:]
    return F.binary_cross_entropy_with_logits(segm, targets, reduction='sum') / h / w


# --------------------------------------------------------------------------- inference
def fast_nms_candidates(scores: Tensor, boxes: Tensor, score_thr: float = 0.05,
                        iou_thr: float = 0.5, top_k: int = 200, max_num: int = 100,
                        second_threshold: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """The release's ``Detect.detect`` + ``fast_nms`` for one image.

    Args:
        scores: (P, K) foreground softmax scores.
        boxes: (P, 4) decoded boxes.
        score_thr: an anchor is a candidate (in every class) iff its best score > this.
        iou_thr, top_k, max_num: Fast NMS threshold, candidates per class, detections kept.
        second_threshold: also drop kept (anchor, class) pairs scoring <= score_thr (the
            release leaves this off).

    Returns:
        anchor indices (N,), labels (N,), scores (N,), sorted by decreasing score.
    """
    keep = scores.max(1).values > score_thr
    idx = keep.nonzero()[:, 0]
    if idx.numel() == 0:
        e = scores.new_zeros(0, dtype=torch.long)
        return e, e, scores.new_zeros(0)
    n, k = idx.numel(), scores.size(1)
    cand_scores = scores[idx].t().reshape(-1)                  # class-major
    cand_labels = torch.arange(k, device=scores.device).repeat_interleave(n)
    cand_anchor = idx.repeat(k)
    kept, kept_scores = fast_nms(cand_scores, cand_labels, boxes[cand_anchor], iou_thr=iou_thr,
                                 top_k=top_k, max_num=-1)
    if second_threshold:
        ok = kept_scores > score_thr
        kept, kept_scores = kept[ok], kept_scores[ok]
    kept, kept_scores = kept[:max_num], kept_scores[:max_num]
    return cand_anchor[kept], cand_labels[kept], kept_scores


def sanitize_boxes(boxes: Tensor, width: int, height: int, integer: bool = True) -> Tensor:
    """The release's output boxes: relative (N, 4) -> pixels of a (height, width) image, x1 <= x2,
    clamped to [0, width] / [0, height], truncated to integers (``.long()``) when ``integer``.

    Returns:
        (N, 4) float boxes (integer-valued when ``integer``).
    """
    x1 = torch.minimum(boxes[:, 0] * width, boxes[:, 2] * width).clamp(min=0)
    x2 = torch.maximum(boxes[:, 0] * width, boxes[:, 2] * width).clamp(max=width)
    y1 = torch.minimum(boxes[:, 1] * height, boxes[:, 3] * height).clamp(min=0)
    y2 = torch.maximum(boxes[:, 1] * height, boxes[:, 3] * height).clamp(max=height)
    out = torch.stack([x1, y1, x2, y2], 1)
    return out.trunc() if integer else out



# --------------------------------------------------------------------------- batch wiring
# (shared by the mmdet and detectron2 adapters: they only convert their structures to the
# relative boxes / masks / labels below and back)
def match_batch(gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
                crowd_boxes: Sequence[Optional[Tensor]], priors: Tensor, num_classes: int,
                pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.4, crowd_iou_thr: float = 0.7
                ) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`match_priors` and :func:`encode_boxes` for every image of a batch.

    Args:
        gt_boxes: per image (G_b, 4) relative x1y1x2y2 (crowds excluded; G_b may be 0).
        gt_labels: per image (G_b,) in [0, K).
        crowd_boxes: per image (C_b, 4) relative crowd boxes, or None.
        priors: (P, 4) centre-size.
        num_classes: K.
        pos_iou_thr, neg_iou_thr, crowd_iou_thr: see :func:`match_priors`.

    Returns:
        labels (B, P) int64 (K negative, -1 neutral; an image without GT is all negative),
        gt_inds (B, P) int64, loc_targets (B, P, 4) (zero where there is no GT).
    """
    b, p = len(gt_boxes), priors.size(0)
    labels = priors.new_full((b, p), num_classes, dtype=torch.long)
    gt_inds = priors.new_zeros((b, p), dtype=torch.long)
    loc_t = priors.new_zeros((b, p, 4))
    for i in range(b):
        if gt_boxes[i].numel() == 0:
            continue
        crowd = crowd_boxes[i] if crowd_boxes is not None else None
        crowd = crowd if crowd is not None and crowd.numel() else None
        labels[i], gt_inds[i] = match_priors(gt_boxes[i].to(priors.dtype), gt_labels[i],
                                             priors, num_classes, crowd, pos_iou_thr,
                                             neg_iou_thr, crowd_iou_thr)
        loc_t[i] = encode_boxes(gt_boxes[i].to(priors.dtype)[gt_inds[i]], priors)
    return labels, gt_inds, loc_t


def box_branch_losses(cls_scores: Tensor, bbox_preds: Tensor, labels: Tensor,
                      loc_targets: Tensor, neg_pos_ratio: int = 3, cls_weight: float = 1.0,
                      bbox_weight: float = 1.5) -> Tuple[dict, Tensor, Tensor]:
    """YOLACT's ``loss_cls`` (OHEM) and ``loss_bbox`` of a batch, divided by its positives.

    Args:
        cls_scores: (B, P, K + 1) logits, background last.
        bbox_preds: (B, P, 4) encoded boxes.
        labels: (B, P) from :func:`match_batch`; loc_targets: (B, P, 4).
        neg_pos_ratio: OHEM negatives per positive (3).
        cls_weight, bbox_weight: ``conf_alpha`` (1), ``bbox_alpha`` (1.5).

    Returns:
        ``{'loss_cls', 'loss_bbox'}`` scalars; pos (B, P) bool; num_pos scalar int64 (the
        release divides by it; a batch without positives is divided by 1 instead of 0).
    """
    num_classes = cls_scores.size(-1) - 1
    pos = (labels >= 0) & (labels < num_classes)
    num_pos = pos.sum()
    avg = num_pos.clamp(min=1).to(bbox_preds.dtype)
    loss_cls = ohem_conf_loss(cls_scores, labels, neg_pos_ratio)
    loss_bbox = box_loss(bbox_preds[pos], loc_targets[pos])
    return (dict(loss_cls=loss_cls * cls_weight / avg, loss_bbox=loss_bbox * bbox_weight / avg),
            pos, num_pos)


def mask_iou_loss(mask_iou_net, maskiou, num_pos: float, weight: float = 25.0,
                  detach_input: bool = False) -> Tensor:
    """YOLACT++'s mask-IoU loss: smooth-L1 (beta 1) sum of the net's IoU at the GT class against
    the binarised masks' IoU, times ``weight`` / ``num_pos``.

    Args:
        mask_iou_net: (M, 1, H, W) -> (M, K) module.
        maskiou: the second output of :func:`proto_mask_losses` (or None: a zero that keeps the
            net in the graph).
        num_pos: the batch's positives (>= 1).
        weight: ``maskiou_alpha`` (25).
        detach_input: stop the gradient into the masks (the release does not).
    """
    zero = sum(p.sum() * 0 for p in mask_iou_net.parameters())
    if maskiou is None:
        return zero
    inputs, targets, labels = maskiou
    if detach_input:
        inputs = inputs.detach()
    pred = gather_class_iou(mask_iou_net(inputs), labels)
    loss = F.smooth_l1_loss(pred, targets.to(pred.dtype), reduction='sum')
    return loss * weight / num_pos + zero


def mask_branch_losses(protos: Tensor, segm: Optional[Tensor], coeffs: List[Tensor],
                       gt_inds: List[Tensor], gt_boxes: List[Tensor], gt_masks: List[Tensor],
                       gt_labels: List[Tensor], num_pos: float, num_classes: int,
                       mask_weight: float = 6.125, masks_to_train: int = 100,
                       crop_padding: int = 1, segm_weight: float = 1.0, mask_iou_net=None,
                       mask_iou_weight: float = 25.0, discard_mask_area: float = 25,
                       detach_mask_iou_input: bool = False) -> dict:
    """YOLACT's mask-branch losses of a batch (``loss_mask``, ``loss_segm``, ``loss_mask_iou``).

    Args:
        protos: (B, k, H, W) prototypes.
        segm: (B, K, h, w) semantic logits, or None (no semantic loss).
        coeffs: per image (N_b, k) coefficients of the positives.
        gt_inds: per image (N_b,) GT index of each positive.
        gt_boxes: per image (G_b, 4) relative boxes.
        gt_masks: per image (G_b, Hi, Wi) bool masks on the (padded) input.
        gt_labels: per image (G_b,) classes.
        num_pos: the batch's number of positives (clamped to >= 1 here).
        num_classes: K.
        mask_weight: ``mask_alpha`` (6.125); masks_to_train, crop_padding: see
            :func:`proto_mask_losses`.
        segm_weight: semantic loss weight (1).
        mask_iou_net: YOLACT++'s :class:`FastMaskIoUNet`, or None.
        mask_iou_weight, discard_mask_area, detach_mask_iou_input: see :func:`mask_iou_loss`
            and :func:`proto_mask_losses`.

    Returns:
        dict of scalars: ``loss_mask`` (summed per-positive losses x mask_weight / (H W) /
        num_pos), ``loss_segm`` (when ``segm`` is given; divided by B), ``loss_mask_iou`` (with
        a mask-IoU net).
    """
    grid = protos.shape[-2:]
    small = [downsample_gt_masks(m.to(device=protos.device, dtype=torch.bool), grid)
             if m.numel() else protos.new_zeros((0, *grid)) for m in gt_masks]
    num_pos = float(max(num_pos, 1))
    loss_m, maskiou = proto_mask_losses(protos, coeffs, gt_inds, gt_boxes, small, gt_labels,
                                        masks_to_train, crop_padding, discard_mask_area,
                                        mask_iou_net is not None)
    zero = sum(c.sum() * 0 for c in coeffs)
    losses = dict(loss_mask=(loss_m + zero) * mask_weight / grid[0] / grid[1] / num_pos)
    if segm is not None:
        targets = torch.stack([
            semantic_targets_multilabel(m.to(device=segm.device, dtype=torch.bool), lab,
                                        num_classes, segm.shape[-2:]) if lab.numel() else
            segm.new_zeros(segm.shape[1:]) for m, lab in zip(gt_masks, gt_labels)])
        losses['loss_segm'] = semantic_seg_loss(segm, targets.to(segm.dtype)) / \
            segm.size(0) * segm_weight
    if mask_iou_net is not None:
        losses['loss_mask_iou'] = mask_iou_loss(mask_iou_net, maskiou, num_pos,
                                                mask_iou_weight, detach_mask_iou_input)
    return losses


def detect(cls_scores: Tensor, bbox_preds: Tensor, coeffs: Tensor, priors: Tensor,
           score_thr: float = 0.05, iou_thr: float = 0.5, top_k: int = 200,
           max_num: int = 100, second_threshold: bool = False) -> dict:
    """The release's detections of one image (softmax, decoding, :func:`fast_nms_candidates`).

    Args:
        cls_scores: (P, K + 1) logits, background last.
        bbox_preds: (P, 4) encoded boxes; coeffs: (P, k); priors: (P, 4) centre-size.
        score_thr, iou_thr, top_k, max_num, second_threshold: see :func:`fast_nms_candidates`.

    Returns:
        dict ``rel_bboxes`` (N, 4) relative, not clipped; ``labels`` (N,); ``scores`` (N,);
        ``coeffs`` (N, k); sorted by decreasing score.
    """
    scores = F.softmax(cls_scores, -1)[:, :-1]
    rel = decode_boxes(bbox_preds, priors)
    anchors, labels, det_scores = fast_nms_candidates(scores, rel, score_thr, iou_thr, top_k,
                                                      max_num, second_threshold)
    return dict(rel_bboxes=rel[anchors], labels=labels, scores=det_scores,
                coeffs=coeffs[anchors])


def assemble_masks(protos: Tensor, coeffs: Tensor, rel_bboxes: Tensor,
                   crop_padding: int = 1) -> Tensor:
    """Mask probabilities of one image's detections: ``sigmoid(coeffs @ protos)`` cropped to the
    boxes (:func:`_crop_rel`).

    Args:
        protos: (k, H, W); coeffs: (N, k); rel_bboxes: (N, 4) relative.

    Returns:
        (N, H, W) probabilities.
    """
    k, gh, gw = protos.shape
    probs = torch.sigmoid(coeffs @ protos.reshape(k, gh * gw)).reshape(-1, gh, gw)
    return _crop_rel(probs, rel_bboxes, crop_padding)


def upsample_masks(probs: Tensor, input_hw, img_hw, size) -> Tensor:
    """(N, H, W) prototype-grid masks spanning the (padded) input -> (N, *size) covering the
    image, in one bilinear step (the release: ``F.interpolate`` to the original size).

    Args:
        probs: (N, H, W); input_hw: (Hp, Wp) padded input; img_hw: (h, w) image inside it;
        size: output (H', W').

    Returns:
        (N, H', W') probabilities.
    """
    if probs.numel() == 0:
        return probs.new_zeros((0, *size))
    if tuple(input_hw) == tuple(img_hw):
        return F.interpolate(probs[None], size=tuple(size), mode='bilinear',
                             align_corners=False)[0]
    # padded input: sample the image's part of the grid (align_corners=False geometry)
    fy, fx = img_hw[0] / input_hw[0], img_hw[1] / input_hw[1]
    ys = ((torch.arange(size[0], device=probs.device, dtype=probs.dtype) + 0.5) /
          size[0] * fy * 2 - 1)
    xs = ((torch.arange(size[1], device=probs.device, dtype=probs.dtype) + 0.5) /
          size[1] * fx * 2 - 1)
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    grid = torch.stack([gx, gy], -1)[None].expand(probs.size(0), -1, -1, -1)
    return F.grid_sample(probs[:, None], grid, mode='bilinear', padding_mode='border',
                         align_corners=False)[:, 0]


def output_boxes(rel_bboxes: Tensor, input_hw, img_hw, ori_hw, scale_factor=None,
                 integer: bool = True) -> Tensor:
    """Relative boxes -> the release's output boxes on the original image (clamped, x1 <= x2,
    truncated to integers when ``integer``).

    Args:
        rel_bboxes: (N, 4) relative to the (padded) input.
        input_hw: (Hp, Wp); img_hw: (h, w) the resized image inside it; ori_hw: (H, W) original.
        scale_factor: (sx, sy) resized / original, default (w / W, h / H).

    Returns:
        (N, 4) float boxes.
    """
    h, w = input_hw
    img_h, img_w = img_hw
    ori_h, ori_w = ori_hw
    if (h, w) == (img_h, img_w):       # no padding: relative to the image, as the release
        return sanitize_boxes(rel_bboxes, ori_w, ori_h, integer)
    sx, sy = scale_factor if scale_factor is not None else (img_w / ori_w, img_h / ori_h)
    px = rel_bboxes * rel_bboxes.new_tensor([w / sx, h / sy, w / sx, h / sy])
    boxes = sanitize_boxes(px, 1, 1, False)
    boxes = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2].clamp(max=ori_w),
                         boxes[:, 3].clamp(max=ori_h)], 1)
    return boxes.trunc() if integer else boxes


def postprocess(protos: Tensor, dets: dict, input_hw, img_hw, out_hw, scale_factor=None,
                mask_iou_net=None, crop_padding: int = 1, mask_thr: float = 0.5,
                rescore_bbox: bool = False, integer_boxes: bool = True,
                drop_empty: bool = True, rescale: bool = True) -> dict:
    """One image's final instances from :func:`detect`'s output (the release's
    ``postprocess`` + eval.py's COCO output).

    Args:
        protos: (k, H, W) prototypes of the image.
        dets: :func:`detect`'s dict (N detections).
        input_hw, img_hw: padded input and resized image sizes; out_hw: output size (the
            original image when ``rescale``).
        scale_factor: (sx, sy) resized / original (see :func:`output_boxes`).
        mask_iou_net: YOLACT++'s net: the mask score becomes ``score * IoU[label]`` (no clamp).
        crop_padding, mask_thr: 1, 0.5.
        rescore_bbox: the box score becomes the mask score too (release configs: False).
        integer_boxes: truncate output boxes (release: True).
        drop_empty: drop detections whose output box has no area (release's COCO output).
        rescale: boxes on the original image (:func:`output_boxes`); otherwise on the resized
            image (un-truncated).

    Returns:
        dict ``masks`` (N', *out_hw) bool, ``bboxes`` (N', 4), ``labels``, ``scores`` and, with
        a mask-IoU net, ``mask_scores`` (N',).
    """
    probs = assemble_masks(protos, dets['coeffs'], dets['rel_bboxes'], crop_padding)
    out = dict(labels=dets['labels'], scores=dets['scores'])
    if mask_iou_net is not None:
        iou = gather_class_iou(mask_iou_net(probs[:, None]), dets['labels'])
        out['mask_scores'] = dets['scores'] * iou
        if rescore_bbox:
            out['scores'] = out['mask_scores']
    out['masks'] = upsample_masks(probs, input_hw, img_hw, out_hw) > mask_thr
    rel = dets['rel_bboxes']
    if rescale:
        out['bboxes'] = output_boxes(rel, input_hw, img_hw, out_hw, scale_factor,
                                     integer_boxes)
    elif tuple(input_hw) == tuple(img_hw):
        out['bboxes'] = sanitize_boxes(rel, img_hw[1], img_hw[0], False)
    else:
        h, w = input_hw
        out['bboxes'] = rel * rel.new_tensor([w, h, w, h])
    if drop_empty:
        b = out['bboxes']
        keep = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) > 0
        out = {k: v[keep] for k, v in out.items()}
    return out
