"""PolarMask inference as the official release computes it (xieenze/PolarMask,
``polarmask_head.py::get_bboxes_single``, ``distance2mask``, ``multiclass_nms_with_mask`` and
``mmdet/core/bbox/transforms.py::bbox_mask2result``).

Shape shorthand: P_l points of level l of one image, K classes, M candidates, D detections,
R rays, H x W output grid.

1. Per level, the ``nms_pre`` points with the largest ``max_k(cls_k * ctr)`` are kept, and
   their (point, class) pairs with ``cls > score_thr`` are the candidates (the shared FCOS
   :func:`insplug.core.fcos.postprocess.select_candidates`, ``candidate_mode='point_topk'``).
2. Boxes: FCOS distances clamped to ``[0, W-1] x [0, H-1]`` of the network input; contours:
   the ray endpoints (in the official ray order) clamped the same way; both divided by the
   scale factor.
3. The score of a candidate is ``cls * (ctr + 0.5)``; per-class greedy NMS with the legacy
   ``+1`` box areas; at most ``max_per_img`` detections by score (:func:`nms_plus_one`).
4. Masks: the contour vertices truncated to integers and filled with OpenCV ``drawContours``
   (:func:`draw_polygons`, all detections in one call).
"""
import math
from typing import List

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from insplug.core.fcos.postprocess import select_candidates

from .targets import official_ray_order, ray_angles


def decode_boxes(points: Tensor, distances: Tensor, max_shape) -> Tensor:
    """FCOS distances to boxes clamped to ``[0, W-1] x [0, H-1]`` (mmdet 1.x ``distance2bbox``).

    Args:
        points: (N, 2) xy. distances: (N, 4) l, t, r, b. max_shape: (H, W).

    Returns:
        (N, 4) x1, y1, x2, y2.
    """
    h, w = max_shape[:2]
    x1 = (points[:, 0] - distances[:, 0]).clamp(min=0, max=w - 1)
    y1 = (points[:, 1] - distances[:, 1]).clamp(min=0, max=h - 1)
    x2 = (points[:, 0] + distances[:, 2]).clamp(min=0, max=w - 1)
    y2 = (points[:, 1] + distances[:, 3]).clamp(min=0, max=h - 1)
    return torch.stack([x1, y1, x2, y2], -1)


def decode_contours(points: Tensor, rays: Tensor, max_shape) -> Tensor:
    """Ray endpoints in the official order and arithmetic (``distance2mask``), float32.

    Args:
        points: (N, 2) xy. rays: (N, R) in insplug's ray order. max_shape: (H, W) to clamp to
            ``W-1``, ``H-1`` (None: no clamp).

    Returns:
        (N, R, 2) xy vertices, official ray order (angle from +y towards +x: 0, 10, ...).
    """
    num_rays = rays.shape[1]
    rays = rays.float()[:, official_ray_order(num_rays, rays.device)]
    points = points.float()
    angles = torch.arange(0, 360, 360 // num_rays, dtype=torch.float32,
                          device=rays.device) / 180 * math.pi
    x = rays * torch.sin(angles)[None] + points[:, 0, None]
    y = rays * torch.cos(angles)[None] + points[:, 1, None]
    if max_shape is not None:
        x = x.clamp(min=0, max=max_shape[1] - 1)
        y = y.clamp(min=0, max=max_shape[0] - 1)
    return torch.stack((x, y), -1)


def nms_plus_one(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float,
                 max_num: int) -> Tensor:
    """Per-class greedy NMS with legacy areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, then the top
    ``max_num`` by score.

    The +1 IoU of boxes b equals the plain IoU of ``b + (0, 0, 1, 1)``; boxes go to torchvision
    in float64 so that its per-class coordinate offsets cost no precision.

    Args:
        boxes: (M, 4). scores: (M,). labels: (M,) long. iou_thr: suppression IoU (official:
            ``>= thr`` suppresses, torchvision ``> thr``; equal only at exact ties).
        max_num: detections kept (<= 0: all).

    Returns:
        (D,) long indices into the M candidates, by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    shifted = boxes.double() + boxes.new_tensor([0, 0, 1, 1], dtype=torch.float64)
    keep = batched_nms(shifted, scores.double(), labels, iou_thr)  # by decreasing score
    return keep[:max_num] if max_num > 0 else keep


def draw_polygons(vertices: Tensor, height: int, width: int) -> Tensor:
    """Fill integer polygons exactly as ``cv2.drawContours(img, [poly], -1, 1, -1)`` per polygon,
    all in one OpenCV call.

    The polygons are stacked on a (D * H, W) canvas, polygon i shifted down by i * H rows; its
    vertices lie in [0, H-1] x [0, W-1] (clamped here), so each one stays in its own band and
    the scanline fill never mixes polygons.

    Args:
        vertices: (D, R, 2) xy, truncated towards zero to int (the official ``.int()``).
        height, width: output grid size.

    Returns:
        (D, H, W) bool on ``vertices.device``.
    """
    num = vertices.shape[0]
    if num == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=vertices.device)
    pts = vertices.detach().int().cpu().numpy().astype(np.int32)
    pts[..., 0] = pts[..., 0].clip(0, width - 1)
    pts[..., 1] = pts[..., 1].clip(0, height - 1)
    pts[..., 1] += (np.arange(num, dtype=np.int32) * height)[:, None]
    canvas = np.zeros((num * height, width), dtype=np.uint8)
    cv2.drawContours(canvas, list(pts[:, :, None, :]), -1, 1, -1)
    return torch.from_numpy(canvas.reshape(num, height, width)).view(torch.bool).to(vertices.device)


def polarmask_predict_single(cls_scores: List[Tensor], bbox_preds: List[Tensor],
                             centernesses: List[Tensor], ray_preds: List[Tensor],
                             points: List[Tensor], img_shape, scale_factor=(1.0, 1.0),
                             out_shape=None, nms_pre: int = 1000, score_thr: float = 0.05,
                             iou_thr: float = 0.5, max_per_img: int = 100,
                             centerness_bias: float = 0.5):
    """Detections of one image.

    Args:
        cls_scores: per level (P_l, K) logits. bbox_preds: per level (P_l, 4) distances.
        centernesses: per level (P_l,) logits. ray_preds: per level (P_l, R) ray lengths.
        points: per level (P_l, 2) xy.
        img_shape: (H, W) of the network input (clamp bounds).
        scale_factor: (sx, sy) from the original image to the network input.
        out_shape: (H', W') of the returned masks (None: ``img_shape``).
        nms_pre, score_thr, iou_thr, max_per_img: official test_cfg values.
        centerness_bias: added to the centerness in the score (official 0.5).

    Returns:
        boxes (D, 4) in original coordinates, scores (D,), labels (D,), masks (D, H', W') bool,
        contours (D, R, 2) float vertices in original coordinates (official ray order).
    """
    boxes, contours, labels, scores = [], [], [], []
    for cls, box, ctr, ray, pts in zip(cls_scores, bbox_preds, centernesses, ray_preds, points):
        prob, c = cls.sigmoid(), ctr.sigmoid()
        point, label, _ = select_candidates(prob, c, score_thr, nms_pre,
                                            candidate_mode='point_topk')
        boxes.append(decode_boxes(pts[point], box[point], img_shape))
        contours.append(decode_contours(pts[point], ray[point], img_shape))
        labels.append(label)
        scores.append(prob[point, label] * (c[point] + centerness_bias))
    boxes, contours = torch.cat(boxes), torch.cat(contours)
    label, scores = torch.cat(labels), torch.cat(scores)
    sx, sy = float(scale_factor[0]), float(scale_factor[1])
    boxes = boxes / boxes.new_tensor([sx, sy, sx, sy], dtype=torch.float32).to(boxes.dtype)
    contours = contours / contours.new_tensor([sx, sy], dtype=torch.float32)
    keep = nms_plus_one(boxes, scores, label, iou_thr, max_per_img)
    h, w = (img_shape if out_shape is None else out_shape)[:2]
    masks = draw_polygons(contours[keep], int(h), int(w))
    return boxes[keep], scores[keep], label[keep], masks, contours[keep]


# --------------------------------------------------------------------------- helpers
def rays_to_polygons(centers: Tensor, rays: Tensor) -> Tensor:
    """Polygon vertices of polar contours (insplug's ray order).

    Args:
        centers: (N, 2) xy.
        rays: (N, R) ray lengths.

    Returns:
        (N, R, 2) xy vertices in angle order.
    """
    angles = ray_angles(rays.shape[1], rays.device, rays.dtype)
    return centers[:, None] + rays[..., None] * torch.stack((angles.cos(), angles.sin()), -1)
