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
2. Mask voting (each detection on the window of its voters' union box): per class, greedy NMS (legacy IoU > 0.3 suppresses) over all candidates scored
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
resampling of a voted mask follows ``mask_resize``. Both are batched gathers over
(detection, voter) pairs on windows (the union box of a detection's voters; outside it every
vote is 0), in chunks of bounded memory, with no per-detection Python loop.
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


def render_binary_masks(masks: Tensor, boxes: Tensor, ys: Tensor, xs: Tensor,
                        binary_thresh: float = 0.4) -> Tensor:
    """``mask_render`` then ``>= binary_thresh``: each S x S mask drawn in its integer box,
    read at the given image pixels.

    Args:
        masks: (U, S, S); boxes: (U, 4) integer-valued (rounded) boxes;
        ys: (U, A), xs: (U, B) image pixel rows / columns to render (any integers).

    Returns:
        (U, A, B) bool (False outside the box).
    """
    size = masks.shape[-1]
    b = boxes.float()
    ysf, xsf = ys.float(), xs.float()
    ratio_w = size / (b[:, 2] - b[:, 0] + 1.0)
    ratio_h = size / (b[:, 3] - b[:, 1] + 1.0)
    inv_x = (xsf - b[:, 0:1] + 0.5) * ratio_w[:, None] - 0.5
    inv_y = (ysf - b[:, 1:2] + 0.5) * ratio_h[:, None] - 0.5
    vals = _bilinear_clamped(masks.float(), inv_y[:, :, None], inv_x[:, None, :])
    inside = (((xsf >= b[:, 0:1]) & (xsf <= b[:, 2:3]))[:, None, :]
              & ((ysf >= b[:, 1:2]) & (ysf <= b[:, 3:4]))[:, :, None])
    return inside & (vals >= binary_thresh)


def voted_boxes_and_masks(voted: Tensor, origin: Tensor, height: int, width: int,
                          mask_size: int, binary_thresh: float = 0.4):
    """Tight box of ``voted >= thresh`` (``reduce_*``; empty: the image centre) and the S x S
    resampling of ``voted`` in it (``mask_resize``), from votes held on windows.

    Args:
        voted: (D, A, B) float32 votes on each detection's window (zero outside its voters);
        origin: (D, 2) int64 image (x, y) of each window's top-left pixel;
        height, width: image size.

    Returns:
        boxes (D, 4) float (integer-valued, inclusive, image pixels); masks (D, S, S) float32.
    """
    d, a, b_ = voted.shape
    on = voted >= binary_thresh
    cols, rows = on.any(1), on.any(2)
    xs = torch.arange(b_, device=voted.device)[None] + origin[:, 0:1]
    ys = torch.arange(a, device=voted.device)[None] + origin[:, 1:2]
    has_x, has_y = cols.any(1), rows.any(1)
    x1 = torch.where(has_x, torch.where(cols, xs, width).min(1).values, width // 2)
    x2 = torch.where(has_x, torch.where(cols, xs, -1).max(1).values, width // 2)
    y1 = torch.where(has_y, torch.where(rows, ys, height).min(1).values, height // 2)
    y2 = torch.where(has_y, torch.where(rows, ys, -1).max(1).values, height // 2)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    j = torch.arange(mask_size, dtype=torch.float32, device=voted.device)
    ratio_w = (boxes[:, 2] - boxes[:, 0] + 1.0) / mask_size
    ratio_h = (boxes[:, 3] - boxes[:, 1] + 1.0) / mask_size
    inv_x = boxes[:, 0:1] + (j[None] + 0.5) * ratio_w[:, None] - 0.5
    inv_y = boxes[:, 1:2] + (j[None] + 0.5) * ratio_h[:, None] - 0.5
    # the kernel clamps in image coordinates; the window is read with zeros outside it
    padded = torch.nn.functional.pad(voted, (1, 1, 1, 1))
    inv_x = inv_x.clamp(min=0)
    inv_y = inv_y.clamp(min=0)
    lx, ly = inv_x.long(), inv_y.long()
    xtop, ytop = lx >= width - 1, ly >= height - 1
    lx = torch.where(xtop, torch.full_like(lx, width - 1), lx)
    ly = torch.where(ytop, torch.full_like(ly, height - 1), ly)
    fx = torch.where(xtop, torch.zeros_like(inv_x), inv_x - lx)
    fy = torch.where(ytop, torch.zeros_like(inv_y), inv_y - ly)
    hx = torch.where(xtop, lx, lx + 1)
    hy = torch.where(ytop, ly, ly + 1)

    def at(yy, xx):  # window value at image (yy, xx): (D, S, 1) x (D, 1, S)
        wy = (yy - origin[:, 1:2] + 1).clamp(0, a + 1)[:, :, None]
        wx = (xx - origin[:, 0:1] + 1).clamp(0, b_ + 1)[:, None, :]
        flat = (wy * (b_ + 2) + wx).reshape(d, -1)
        return padded.reshape(d, -1).gather(1, flat).view(d, mask_size, mask_size)

    fy, fx = fy[:, :, None], fx[:, None, :]
    masks = ((1 - fy) * (1 - fx) * at(ly, lx) + (1 - fy) * fx * at(ly, hx)
             + fy * (1 - fx) * at(hy, lx) + fy * fx * at(hy, hx))
    return boxes, masks


def paste_cv2(masks: Tensor, boxes: Tensor, height: int, width: int,
              binary_thresh: float = 0.4) -> Tensor:
    """``mask_voc2coco``: ``cv2.resize`` (INTER_LINEAR) of each S x S mask to its rounded
    inclusive box, ``>= binary_thresh``, zero outside the box; sampled only on the boxes
    (a window of the largest box size), then written into the (D, H, W) output.

    Args:
        masks: (D, S, S); boxes: (D, 4).

    Returns:
        (D, H, W) bool.
    """
    d, size = masks.shape[0], masks.shape[-1]
    out = torch.zeros(d, height, width, dtype=torch.bool, device=masks.device)
    if d == 0:
        return out
    b = torch.round(boxes.double())  # np.round: halves to even
    x0 = b[:, 0].long().clamp(0, width - 1)
    y0 = b[:, 1].long().clamp(0, height - 1)
    win_w = int((b[:, 2] - b[:, 0] + 1).clamp(1, width).max())
    win_h = int((b[:, 3] - b[:, 1] + 1).clamp(1, height).max())
    xs = x0[:, None] + torch.arange(win_w, device=masks.device)[None]  # (D, win_w)
    ys = y0[:, None] + torch.arange(win_h, device=masks.device)[None]
    # cv2: fx = (float)((dx + 0.5) * src / dst - 0.5), dx relative to the box
    inv_x = ((xs.double() - b[:, 0:1] + 0.5) * (size / (b[:, 2:3] - b[:, 0:1] + 1)) - 0.5).float()
    inv_y = ((ys.double() - b[:, 1:2] + 0.5) * (size / (b[:, 3:4] - b[:, 1:2] + 1)) - 0.5).float()
    vals = _bilinear_clamped(masks.float(), inv_y[:, :, None], inv_x[:, None, :])
    inside = (((xs <= b[:, 2:3]) & (xs < width))[:, None, :]
              & ((ys <= b[:, 3:4]) & (ys < height))[:, :, None])
    on = inside & (vals >= binary_thresh)
    det, r, c = torch.nonzero(on, as_tuple=True)
    out[det, ys[det, r], xs[det, c]] = True
    return out


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
    pair_det, pair_cand = torch.nonzero((overlaps >= merge_thr).t(), as_tuple=True)
    weight = scores[pair_cand, labels[pair_det]].double()
    total = weight.new_zeros(idx.numel()).index_add_(0, pair_det, weight)
    weight = (weight / total[pair_det]).float()
    rounded = torch.round(boxes.double())  # np.round: halves to even
    # each detection's window: the union of its voters' boxes (in the image)
    big = torch.iinfo(torch.long).max
    cand_box = rounded[pair_cand].long()
    lo_x = torch.full_like(idx, big).scatter_reduce(0, pair_det, cand_box[:, 0], 'amin')
    lo_y = torch.full_like(idx, big).scatter_reduce(0, pair_det, cand_box[:, 1], 'amin')
    hi_x = torch.full_like(idx, -1).scatter_reduce(0, pair_det, cand_box[:, 2], 'amax')
    hi_y = torch.full_like(idx, -1).scatter_reduce(0, pair_det, cand_box[:, 3], 'amax')
    lo_x, lo_y = lo_x.clamp(0, width - 1), lo_y.clamp(0, height - 1)
    hi_x, hi_y = hi_x.clamp(0, width - 1), hi_y.clamp(0, height - 1)
    win_w = int((hi_x - lo_x + 1).max())
    win_h = int((hi_y - lo_y + 1).max())
    origin = torch.stack([lo_x, lo_y], 1)
    xs = lo_x[:, None] + torch.arange(win_w, device=boxes.device)[None]
    ys = lo_y[:, None] + torch.arange(win_h, device=boxes.device)[None]
    in_img = (((xs < width) & (xs <= hi_x[:, None]))[:, None, :]
              & ((ys < height) & (ys <= hi_y[:, None]))[:, :, None])
    voted = masks.new_zeros(idx.numel(), win_h * win_w, dtype=torch.float32)
    step = max(1, RENDER_CHUNK_PIXELS // max(win_h * win_w, 1))
    for start in range(0, pair_det.numel(), step):  # chunks of (detection, voter) pairs
        sl = slice(start, start + step)
        det, cand = pair_det[sl], pair_cand[sl]
        drawn = render_binary_masks(masks[cand], rounded[cand], ys[det], xs[det],
                                    binary_thresh) & in_img[det]
        voted.index_add_(0, det, weight[sl, None] * drawn.reshape(det.numel(), -1).float())
    voted_boxes, voted_masks = voted_boxes_and_masks(voted.view(-1, win_h, win_w), origin,
                                                     height, width, size, binary_thresh)
    valid = (voted_boxes[:, 2] > voted_boxes[:, 0]) & (voted_boxes[:, 3] > voted_boxes[:, 1])
    return voted_boxes[valid], voted_masks[valid], labels[valid], det_scores[valid]
