"""EmbedMask's per-image / per-batch steps shared by the mmdet and detectron2 adapters
(official release, yinghdb/EmbedMask commit e9d6142; the formulas are in :mod:`.embedding`).

Shape shorthand: B images, D embedding dims (margins: D, or 1 with one margin), P points of one
image (levels concatenated, finest first), G objects of one image, N detections, h0 x w0 the
finest FPN level, gh x gw the pixel-embedding grid (``mask_scale_factor`` x finer), K classes.

* :func:`points_in_masks` -- the "point lies on the object's mask" sampling rule.
* :func:`sample_object_points` -- per object, the point whose embedding the mask loss uses.
* :func:`batch_mask_loss` -- the official mask loss of a batch (before ``LOSS_MASK_ALPHA``).
* :func:`fcos_official_detect` -- FCOS-official (maskrcnn-benchmark) detections of one image.
* :func:`detection_masks` -- test-time masks of one image's detections.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.fcos import decode_ltrb, final_scores, nms_kthvalue, select_candidates

from .embedding import (box_crop_region, box_log_prob, embed_mask_loss, embedding_distance,
                        log_prob_to_masks, mask_targets, resized_mask_size, sample_first_max_iou)

__all__ = ['points_in_masks', 'sample_object_points', 'batch_mask_loss', 'fcos_official_detect',
           'detection_masks']


def points_in_masks(masks: Tensor, points: Tensor) -> Tensor:
    """Official ``is_in_masks``: the point (pixel ``(int(x), int(y))``) lies on the mask.

    Args:
        masks: (G, H, W) bool. points: (P, 2) xy pixels.

    Returns:
        (P, G) bool (False outside the masks' extent).
    """
    h, w = masks.shape[-2:]
    px = points[:, 0].long()
    py = points[:, 1].long()
    inside = (px >= 0) & (py >= 0) & (px < w) & (py < h)
    return masks[:, py.clamp(0, h - 1), px.clamp(0, w - 1)].t() & inside[:, None]


def sample_object_points(points: Tensor, reg_pixels: Tensor, gt_inds: Tensor,
                         gt_boxes: Tensor) -> Tensor:
    """Official embedding sampling of one image: for each object, the first (in point order)
    of its positive points whose predicted box has the maximum IoU (+1 areas) with its box.

    Args:
        points: (P, 2). reg_pixels: (P, 4) predicted (l, t, r, b) in pixels (detached).
        gt_inds: (P,) long matched object (-1 background). gt_boxes: (G, 4).

    Returns:
        (G,) long point index; -1 for an object without a positive point.
    """
    pos = (gt_inds >= 0).nonzero(as_tuple=True)[0]
    pred = decode_ltrb(points[pos], reg_pixels[pos])
    first = sample_first_max_iou(pred, gt_boxes.to(pred), gt_inds[pos], gt_boxes.shape[0])
    if len(pos) == 0:
        return first
    return torch.where(first >= 0, pos[first.clamp(min=0)], first)


def batch_mask_loss(pixel_embed: Tensor, embeds: Sequence[Tensor], margins: Sequence[Tensor],
                    masks: Sequence[Tensor], boxes: Sequence[Tensor], stride0: int,
                    mask_scale_factor: int = 2, box_padding: float = -1.0) -> Optional[Tensor]:
    """The official mask loss of a batch (before the loss weight).

    Args:
        pixel_embed: (B, D, h0, w0) pixel embeddings of the finest level.
        embeds: B tensors (G_i, D) sampled proposal embeddings of the objects that have one.
        margins: B tensors (G_i, D) or (G_i,) their margins.
        masks: B tensors (G_i, H, W) {0, 1} the objects' masks (input pixels).
        boxes: B tensors (G_i, 4) the objects' boxes (used when ``box_padding >= 0``).
        stride0: stride of the finest level (8). mask_scale_factor: 2.
        box_padding: < 0: loss over the whole grid (released); >= 0: inside the padded box.

    Returns:
        scalar, or None when no image has an object with a sampled point.
    """
    num_imgs, _, h0, w0 = pixel_embed.shape
    gh, gw = h0 * mask_scale_factor, w0 * mask_scale_factor
    grid_stride = stride0 / mask_scale_factor
    pixel = F.interpolate(pixel_embed, size=(gh, gw), mode='bilinear', align_corners=False)
    dists, tgts, regions, image_of = [], [], [], []
    for i in range(num_imgs):
        if embeds[i].shape[0] == 0:
            continue
        dists.append(embedding_distance(pixel[i], embeds[i], margins[i]))
        tgts.append(mask_targets(masks[i], int(h0 * stride0), int(w0 * stride0), gh, gw))
        if box_padding >= 0:
            regions.append(box_crop_region(boxes[i].to(pixel) / grid_stride, gh, gw,
                                           box_padding))
        image_of.append(torch.full((embeds[i].shape[0],), i, dtype=torch.long,
                                   device=pixel.device))
    if not dists:
        return None
    return embed_mask_loss(torch.cat(dists), torch.cat(tgts).to(pixel.dtype),
                           torch.cat(regions) if regions else None, torch.cat(image_of),
                           num_imgs)


def fcos_official_detect(cls_logits: Sequence[Tensor], reg: Sequence[Tensor],
                         ctr_logits: Sequence[Tensor], points: Sequence[Tensor],
                         img_hw: Tuple[int, int], score_thr: float = 0.05, nms_pre: int = 1000,
                         score: str = 'product', nms_thr: float = 0.6,
                         max_per_img: int = 100) -> Dict[str, Tensor]:
    """FCOS-official (maskrcnn-benchmark) detection of one image: candidates per level
    (``cls > score_thr``, top ``nms_pre`` by ``cls * ctr``), boxes clipped to
    ``[0, W - 1] x [0, H - 1]`` before a class-aware NMS with +1 box areas (torchvision NMS on
    boxes grown by one pixel gives the same IoU), kthvalue top-k.

    Args:
        cls_logits: L tensors (P_l, K). reg: L tensors (P_l, 4) pixels. ctr_logits: L (P_l,).
        points: L tensors (P_l, 2). img_hw: network-input image size.

    Returns:
        ``bboxes`` (N, 4), ``scores`` (N,), ``labels`` (N,), ``point_inds`` (N,) (into the
        concatenated points).
    """
    h, w = img_hw
    boxes, scores, labels, pinds = [], [], [], []
    offset = 0
    for c, r, t, p in zip(cls_logits, reg, ctr_logits, points):
        cls_prob, ctr_prob = c.sigmoid(), t.sigmoid()
        pi, lab, prod = select_candidates(cls_prob, ctr_prob, score_thr, nms_pre, False,
                                          'threshold_topk')
        b = decode_ltrb(p[pi], r[pi])
        b = torch.stack([b[:, 0].clamp(0, w - 1), b[:, 1].clamp(0, h - 1),
                         b[:, 2].clamp(0, w - 1), b[:, 3].clamp(0, h - 1)], 1)
        boxes.append(b)
        scores.append(final_scores(prod, cls_prob[pi, lab], score))
        labels.append(lab)
        pinds.append(pi + offset)
        offset += p.shape[0]
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = nms_kthvalue(boxes + boxes.new_tensor([0, 0, 1, 1]), scores, labels, nms_thr,
                        max_per_img)
    return dict(bboxes=boxes[keep], scores=scores[keep], labels=labels[keep],
                point_inds=torch.cat(pinds)[keep])


def detection_masks(pixel_embed: Tensor, embeds: Tensor, margins: Tensor, boxes: Tensor,
                    in_hw: Tuple[int, int], out_hw: Tuple[int, int], stride0: int = 8,
                    mask_scale_factor: int = 2, box_pad: int = 2,
                    mask_thr: float = 0.53) -> Tensor:
    """Test-time masks of one image's detections (official ``EmbedMaskPostProcessor`` +
    ``coco_eval``).

    Args:
        pixel_embed: (D, h0, w0) pixel embeddings of the finest level.
        embeds: (N, D). margins: (N, D) or (N,). boxes: (N, 4) network-input pixels.
        in_hw: network-input image size. out_hw: output (original) image size.
        stride0, mask_scale_factor: grid of stride ``stride0 / mask_scale_factor``.
        box_pad: grid cells added around a box (2). mask_thr: probability threshold (0.53).

    Returns:
        (N, out_h, out_w) bool.
    """
    d, h0, w0 = pixel_embed.shape
    gh, gw = h0 * mask_scale_factor, w0 * mask_scale_factor
    grid_stride = stride0 / mask_scale_factor
    pixel = F.interpolate(pixel_embed[None], size=(gh, gw), mode='bilinear',
                          align_corners=False)[0]
    logp = box_log_prob(pixel, embeds, margins, boxes / grid_stride, box_pad)
    size = resized_mask_size(gh, gw, grid_stride, out_hw[0], out_hw[1], in_hw[0], in_hw[1])
    return log_prob_to_masks(logp, size, out_hw[0], out_hw[1], mask_thr)


def gather_rows(maps: List[Tensor], index: Tensor, image: int) -> Tensor:
    """Rows ``index`` of one image's per-level maps flattened and concatenated.

    Args:
        maps: L tensors (B, C, H_l, W_l). index: (M,) long into the P points. image: b.

    Returns:
        (M, C).
    """
    c = maps[0].shape[1]
    return torch.cat([m[image].permute(1, 2, 0).reshape(-1, c) for m in maps])[index]
