"""FCIS inference (release: ``fcis/core/tester.py``, ``fcis/operator_py/box_parser.py``,
``lib/mask/mask_transform.py::gpu_mask_voting`` with ``lib/mask/mv_kernel.cu``,
``lib/utils/mask_voc2coco.py``; COCO config ``TEST.ITER = 2``, ``MIN_DROP_SIZE = 2``,
``NMS = 0.3``, ``MASK_MERGE_THRESH = 0.5``, ``BINARY_THRESH = 0.4``, 100 per image).

Shapes: N candidate RoIs (N, 4) in image pixels (legacy inclusive boxes); K classes with
background 0; S x S masks (inside probabilities of each RoI's arg-max class); an H x W image.

1. Iteration 2: each RoI is moved by its class-agnostic box output (``legacy_box_decode`` of
   ``delta * stds``, then clipped); the head runs again on the moved RoIs; candidates are the
   RoIs of both iterations with their class probabilities and masks; candidates narrower or
   lower than ``MIN_DROP_SIZE`` are dropped; boxes are the RoIs themselves.
2. Mask voting: per class, greedy NMS (legacy IoU > 0.3 suppresses) over all candidates scored
   by that class, at most 100 per class; a global threshold ``max(100th best score, 1e-3)``;
   then each kept detection's mask is the score-weighted average of the binarised
   (``>= 0.4``) masks of every candidate whose legacy box IoU with it is ``>= 0.5``; its box
   becomes the tight box of the average ``>= 0.4`` (a detection whose box is empty or one pixel
   wide is dropped, as ``gpu_mask_voting`` does) and its mask the S x S resampling of the
   average in that box.
3. Output: each S x S mask is resized into its (integer, inclusive) box like ``cv2.resize``
   and thresholded at 0.4 (``mask_voc2coco``).

Rendering a candidate mask into the image follows ``mask_render`` (source coordinate
``(x - x1 + 0.5) * S / (x2 - x1 + 1) - 0.5`` in float32, clamped to [0, S - 1]); the
resampling of a voted mask follows ``mask_resize``. Both are batched gathers over candidates
(chunks of bounded memory), with no per-detection Python loop.
"""
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from insplug.core.postprocess.nms import group_top_k

from .boxes import clip_boxes, legacy_box_decode, legacy_box_iou

# at most this many (candidates x image pixels) rendered at once
RENDER_CHUNK_PIXELS = 1 << 24


def parse_boxes(rois: Tensor, bbox_pred: Tensor, height: int, width: int,
                stds=(0.2, 0.2, 0.5, 0.5), means=(0.0, 0.0, 0.0, 0.0)) -> Tensor:
    """Second-iteration RoIs (``BoxParser`` with class-agnostic deltas in slot 1).

    Args:
        rois: (N, 4); bbox_pred: (N, 4 K_reg) normalised deltas.
        height, width: image size (for clipping).

    Returns:
        (N, 4) moved, clipped RoIs.
    """
    deltas = bbox_pred[:, 4:8] * bbox_pred.new_tensor(stds) + bbox_pred.new_tensor(means)
    return clip_boxes(legacy_box_decode(rois, deltas), height, width)


def keep_min_size(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of boxes at least ``min_size`` wide and high (inclusive widths).

    Args:
        boxes: (N, 4).

    Returns:
        (M,) int64.
    """
    ws = boxes[:, 2] - boxes[:, 0] + 1
    hs = boxes[:, 3] - boxes[:, 1] + 1
    return torch.nonzero((ws >= min_size) & (hs >= min_size)).flatten()


def _bilinear_clamped(src: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """``bilinear_interpolate`` of ``mv_kernel.cu`` (coordinates clamped at 0 and size - 1).

    Args:
        src: (N, h, w); ys: (N, A, 1) float; xs: (N, 1, B) float.

    Returns:
        (N, A, B).
    """
    n, h, w = src.shape
    ys = ys.clamp(min=0)
    xs = xs.clamp(min=0)
    y0 = ys.long()
    x0 = xs.long()
    ytop = y0 >= h - 1
    xtop = x0 >= w - 1
    y0 = torch.where(ytop, torch.full_like(y0, h - 1), y0)
    x0 = torch.where(xtop, torch.full_like(x0, w - 1), x0)
    ys = torch.where(ytop, y0.to(ys.dtype), ys)
    xs = torch.where(xtop, x0.to(xs.dtype), xs)
    y1 = torch.where(ytop, y0, y0 + 1)
    x1 = torch.where(xtop, x0, x0 + 1)
    ly, lx = ys - y0, xs - x0
    flat = src.reshape(n, h * w)
    a, b = y0.shape[1], x0.shape[2]

    def at(yy, xx):
        return flat.gather(1, (yy * w + xx).expand(n, a, b).reshape(n, -1)).view(n, a, b)

    return ((1 - ly) * (1 - lx) * at(y0, x0) + (1 - ly) * lx * at(y0, x1)
            + ly * (1 - lx) * at(y1, x0) + ly * lx * at(y1, x1))


def render_binary_masks(masks: Tensor, boxes: Tensor, height: int, width: int,
                        binary_thresh: float = 0.4) -> Tensor:
    """``mask_render`` then ``>= binary_thresh``: each S x S mask drawn in its integer box.

    Args:
        masks: (U, S, S) float32; boxes: (U, 4) integer-valued (rounded) boxes.

    Returns:
        (U, H, W) bool.
    """
    num, size = masks.shape[0], masks.shape[-1]
    b = boxes.float()
    xs = torch.arange(width, dtype=torch.float32, device=masks.device)
    ys = torch.arange(height, dtype=torch.float32, device=masks.device)
    ratio_w = size / (b[:, 2] - b[:, 0] + 1.0)
    ratio_h = size / (b[:, 3] - b[:, 1] + 1.0)
    inv_x = (xs[None] - b[:, 0:1] + 0.5) * ratio_w[:, None] - 0.5
    inv_y = (ys[None] - b[:, 1:2] + 0.5) * ratio_h[:, None] - 0.5
    vals = _bilinear_clamped(masks.float(), inv_y[:, :, None], inv_x[:, None, :])
    inside = ((xs[None, None, :] >= b[:, 0, None, None]) & (xs[None, None, :] <= b[:, 2, None, None])
              & (ys[None, :, None] >= b[:, 1, None, None])
              & (ys[None, :, None] <= b[:, 3, None, None]))
    return inside & (vals >= binary_thresh)


def voted_boxes_and_masks(voted: Tensor, mask_size: int, binary_thresh: float = 0.4):
    """Tight box of ``voted >= thresh`` (``reduce_*``; empty: the image centre) and the S x S
    resampling of ``voted`` in it (``mask_resize``).

    Args:
        voted: (D, H, W) float32 weighted votes.

    Returns:
        boxes (D, 4) float (integer-valued, inclusive); masks (D, S, S) float32.
    """
    d, h, w = voted.shape
    on = voted >= binary_thresh
    cols, rows = on.any(1), on.any(2)
    xs = torch.arange(w, device=voted.device)
    ys = torch.arange(h, device=voted.device)
    has_x, has_y = cols.any(1), rows.any(1)
    x1 = torch.where(has_x, torch.where(cols, xs, w).min(1).values, w // 2)
    x2 = torch.where(has_x, torch.where(cols, xs, -1).max(1).values, w // 2)
    y1 = torch.where(has_y, torch.where(rows, ys, h).min(1).values, h // 2)
    y2 = torch.where(has_y, torch.where(rows, ys, -1).max(1).values, h // 2)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    j = torch.arange(mask_size, dtype=torch.float32, device=voted.device)
    ratio_w = (boxes[:, 2] - boxes[:, 0] + 1.0) / mask_size
    ratio_h = (boxes[:, 3] - boxes[:, 1] + 1.0) / mask_size
    inv_x = boxes[:, 0:1] + (j[None] + 0.5) * ratio_w[:, None] - 0.5
    inv_y = boxes[:, 1:2] + (j[None] + 0.5) * ratio_h[:, None] - 0.5
    masks = _bilinear_clamped(voted, inv_y[:, :, None], inv_x[:, None, :])
    return boxes, masks


def paste_cv2(masks: Tensor, boxes: Tensor, height: int, width: int,
              binary_thresh: float = 0.4) -> Tensor:
    """``mask_voc2coco``: ``cv2.resize`` (INTER_LINEAR) of each S x S mask to its rounded
    inclusive box, ``>= binary_thresh``, zero outside the box.

    Args:
        masks: (D, S, S); boxes: (D, 4).

    Returns:
        (D, H, W) bool.
    """
    d, size = masks.shape[0], masks.shape[-1]
    out = torch.zeros(d, height, width, dtype=torch.bool, device=masks.device)
    if d == 0:
        return out
    b = torch.floor(boxes.double() + 0.5)
    xs = torch.arange(width, dtype=torch.float64, device=masks.device)
    ys = torch.arange(height, dtype=torch.float64, device=masks.device)
    # cv2: fx = (float)((dx + 0.5) * src / dst - 0.5), dx relative to the box
    inv_x = ((xs[None] - b[:, 0:1] + 0.5) * (size / (b[:, 2:3] - b[:, 0:1] + 1)) - 0.5).float()
    inv_y = ((ys[None] - b[:, 1:2] + 0.5) * (size / (b[:, 3:4] - b[:, 1:2] + 1)) - 0.5).float()
    vals = _bilinear_clamped(masks.float(), inv_y[:, :, None], inv_x[:, None, :])
    inside = ((xs[None, None, :] >= b[:, 0, None, None]) & (xs[None, None, :] <= b[:, 2, None, None])
              & (ys[None, :, None] >= b[:, 1, None, None])
              & (ys[None, :, None] <= b[:, 3, None, None]))
    return inside & (vals >= binary_thresh)


def select_detections(boxes: Tensor, scores: Tensor, nms_thr: float = 0.3,
                      max_per_image: int = 100, score_floor: float = 1e-3):
    """Per-class NMS over all candidates, top ``max_per_image`` per class, then the global
    threshold ``max(max_per_image-th best, score_floor)`` (``gpu_mask_voting``, first part).

    Args:
        boxes: (N, 4); scores: (N, K) with background column 0.

    Returns:
        idx (D,) candidate index, labels (D,) in [1, K), det_scores (D,); ordered by class,
        then by decreasing score.
    """
    n, k = scores.shape
    cls_scores = scores[:, 1:].t().reshape(-1).float()  # class-major
    cand = torch.arange(n, device=boxes.device).repeat(k - 1)
    labels = torch.arange(1, k, device=boxes.device).repeat_interleave(n)
    b = boxes.float()
    b = torch.cat([b[:, :2], b[:, 2:] + 1], 1)  # legacy IoU == plain IoU of (x2 + 1, y2 + 1)
    keep = batched_nms(b[cand], cls_scores, labels, nms_thr)
    table = group_top_k(cls_scores[keep], labels[keep], max_per_image)
    sel = keep[table[table >= 0]]
    if sel.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, empty, scores.new_zeros(0)
    sorted_scores = cls_scores[sel].sort(descending=True).values
    thresh = max(float(sorted_scores[min(sel.numel(), max_per_image) - 1]), score_floor)
    sel = sel[cls_scores[sel] >= thresh]
    # class, then decreasing score (NMS order)
    order = torch.argsort(cls_scores[sel], descending=True, stable=True)
    sel = sel[order]
    sel = sel[torch.sort(labels[sel], stable=True).indices]
    return cand[sel], labels[sel], scores[cand[sel], labels[sel]]


def mask_voting(boxes: Tensor, masks: Tensor, scores: Tensor, height: int, width: int,
                nms_thr: float = 0.3, merge_thr: float = 0.5, max_per_image: int = 100,
                binary_thresh: float = 0.4, score_floor: float = 1e-3):
    """The release's test-time mask voting (module docstring, step 2).

    Args:
        boxes: (N, 4) clipped candidate boxes; masks: (N, S, S) inside probabilities;
        scores: (N, K) class probabilities.
        height, width: image size.

    Returns:
        boxes (D, 4) inclusive integer-valued; masks (D, S, S) voted averages; labels (D,)
        in [1, K); scores (D,).
    """
    size = masks.shape[-1]
    idx, labels, det_scores = select_detections(boxes, scores, nms_thr, max_per_image,
                                                score_floor)
    if idx.numel() == 0:
        return boxes.new_zeros(0, 4), masks.new_zeros(0, size, size), labels, det_scores
    overlaps = legacy_box_iou(boxes.double(), boxes[idx].double())  # (N, D)
    votes = (overlaps >= merge_thr).t()  # (D, N)
    weights = torch.where(votes, scores[:, labels].t().double(), torch.zeros_like(overlaps.t()))
    weights = (weights / weights.sum(1, keepdim=True)).float()
    used = torch.nonzero(votes.any(0)).flatten()
    rounded = torch.floor(boxes[used].double() + 0.5)
    voted = masks.new_zeros(idx.numel(), height * width, dtype=torch.float32)
    step = max(1, RENDER_CHUNK_PIXELS // max(height * width, 1))
    for start in range(0, used.numel(), step):  # chunks of candidates (bounded memory)
        part = used[start:start + step]
        rendered = render_binary_masks(masks[part], rounded[start:start + step], height, width,
                                       binary_thresh)
        voted += weights[:, part] @ rendered.reshape(part.numel(), -1).float()
    voted_boxes, voted_masks = voted_boxes_and_masks(voted.view(-1, height, width), size,
                                                     binary_thresh)
    valid = (voted_boxes[:, 2] > voted_boxes[:, 0]) & (voted_boxes[:, 3] > voted_boxes[:, 1])
    return voted_boxes[valid], voted_masks[valid], labels[valid], det_scores[valid]
