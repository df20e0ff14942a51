"""Dense multi-scale InstanceFCN inference -> class-agnostic segment proposals.

Shapes: one image; P pyramid scales; at scale p the feature map is (h_p, w_p) with k*k
instance-sensitive maps and an objectness map; K_p windows kept at scale p; K proposals;
(H, W) the output image.

Paper (Sec. 4): every window of every scale is a candidate (the assembling module is applied
densely); here the ``pre_nms`` best windows of each scale by objectness are assembled
(:func:`insplug.core.position_sensitive.assemble_windows`, one gather), their m x m segment
probabilities are pasted bilinearly onto the window's image box (cell j of a window covers
image pixels [(x0 + j) S, (x0 + j + 1) S) / s), thresholded, and NMS on the boxes of the
masks (IoU ``nms_iou``) keeps ``max_per_img``.
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from insplug.core.position_sensitive import assemble_windows
from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.postprocess.nms import box_nms
from insplug.core.postprocess.paste import paste_masks_in_boxes

# logit of window cells beyond the feature map (probability ~0)
OUTSIDE_LOGIT = -30.0


def window_boxes(ys: Tensor, xs: Tensor, window: int, stride: int, scale: float) -> Tensor:
    """Image boxes (x1, y1, x2, y2) of windows centred on cells (ys, xs) of a map computed on
    the image resized by ``scale``: (K,) x2 -> (K, 4)."""
    half = window // 2
    x1 = (xs - half).float() * stride / scale
    y1 = (ys - half).float() * stride / scale
    side = window * stride / scale
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def select_windows(inst: Tensor, obj: Tensor, window: int, num: int
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``num`` best windows of one map.

    Args:
        inst: (k*k, h, w) logits. obj: (h, w) logits.

    Returns:
        scores (K,) sigmoid objectness (descending), ys, xs (K,) int64 window centres,
        segments (K, m, m) probabilities.
    """
    h, w = obj.shape
    order = torch.sort(obj.flatten(), descending=True, stable=True).indices[:num]
    ys, xs = order // w, order % w
    half = window // 2
    seg = assemble_windows(inst[None], torch.zeros_like(ys), ys - half, xs - half, window,
                           fill=OUTSIDE_LOGIT)
    return torch.sigmoid(obj.flatten()[order]), ys, xs, torch.sigmoid(seg)


def propose(per_scale: Sequence[Tuple[Tensor, Tensor, float]], window: int, stride: int,
            height: int, width: int, pre_nms: int = 1000, mask_thr: float = 0.5,
            nms_iou: float = 0.8, max_per_img: int = 100, box_scale: float = 1.0
            ) -> Tuple[Tensor, Tensor, Tensor]:
    """Proposals of one image from its pyramid.

    Args:
        per_scale: P tuples (inst (k*k, h_p, w_p), obj (h_p, w_p), s_p) where s_p resizes the
            network input to that level.
        window: m. stride: S. height, width: output mask size.
        box_scale: output pixels per network-input pixel (1 / mmdet's scale_factor when
            rescaling).

    Returns:
        masks (K, H, W) bool, scores (K,), boxes (K, 4) (from the masks).
    """
    scores, boxes, segs = [], [], []
    for inst, obj, s in per_scale:
        sc, ys, xs, seg = select_windows(inst, obj, window, pre_nms)
        scores.append(sc)
        boxes.append(window_boxes(ys, xs, window, stride, s) * box_scale)
        segs.append(seg)
    scores, boxes, segs = torch.cat(scores), torch.cat(boxes), torch.cat(segs)
    masks = paste_masks_in_boxes(segs, boxes, height, width, threshold=mask_thr)
    mboxes = masks_to_boxes(masks).to(scores)
    nonempty = masks.flatten(1).any(1)
    idx = torch.nonzero(nonempty)[:, 0]
    keep, _ = box_nms(scores[idx], torch.zeros_like(idx), mboxes[idx], iou_thr=nms_iou,
                      max_num=max_per_img, class_agnostic=True)
    keep = idx[keep]
    return masks[keep], scores[keep], mboxes[keep]
