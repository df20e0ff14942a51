"""FCOS-style centre-sampling assignment of feature-map points to ground-truth objects.

Shape shorthand: P points (all pyramid levels concatenated), G ground-truth objects.

A point is a positive candidate of an object when (a) it lies strictly inside the object's
box clipped to a square of half-size ``radius * stride`` around the object's centre, and
(b) the largest of its four distances to the box sides lies in its level's regress range.
Among the candidates of a point the object of smallest box area wins (Tian et al., FCOS).
The centre is the box centre (FCOS) or the mask mass centre (PolarMask, SOLO).
"""
import torch
from torch import Tensor

INF = 1e8


def box_side_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances from points to the four sides of boxes.

    Args:
        points: (P, 2) xy.
        boxes: (G, 4) x1, y1, x2, y2.

    Returns:
        (P, G, 4) left, top, right, bottom distances (negative outside the box).
    """
    x, y = points[:, 0, None], points[:, 1, None]
    return torch.stack((x - boxes[None, :, 0], y - boxes[None, :, 1],
                        boxes[None, :, 2] - x, boxes[None, :, 3] - y), dim=-1)


def mask_mass_centers(masks: Tensor) -> Tensor:
    """Mass centres of binary masks, in pixel-centre coordinates (pixel (i, j) is at j+0.5, i+0.5).

    Args:
        masks: (G, H, W) bool or {0, 1}.

    Returns:
        (G, 2) xy; an empty mask gets the image centre.
    """
    masks = masks.float()
    num, height, width = masks.shape
    ys = torch.arange(height, dtype=masks.dtype, device=masks.device) + 0.5
    xs = torch.arange(width, dtype=masks.dtype, device=masks.device) + 0.5
    area = masks.sum(dim=(1, 2))
    cx = (masks.sum(dim=1) * xs).sum(dim=1)
    cy = (masks.sum(dim=2) * ys).sum(dim=1)
    empty = area == 0
    safe = area.clamp(min=1)
    cx = torch.where(empty, torch.full_like(cx, width / 2), cx / safe)
    cy = torch.where(empty, torch.full_like(cy, height / 2), cy / safe)
    return torch.stack((cx, cy), dim=1)


def center_sampling_assign(points: Tensor, point_strides: Tensor, regress_ranges: Tensor,
                           gt_boxes: Tensor, centers: Tensor = None,
                           radius: float = 1.5, extra_valid: Tensor = None) -> Tensor:
    """Assign each point to at most one object.

    Args:
        points: (P, 2) xy of feature-map points in image coordinates.
        point_strides: (P,) stride of each point's level.
        regress_ranges: (P, 2) lower and upper bound of the max box-side distance at each point.
        gt_boxes: (G, 4) x1, y1, x2, y2.
        centers: (G, 2) xy centres of the sampling regions; None uses the box centres.
        radius: half-size of the sampling square in units of the stride; ``radius <= 0`` turns
            centre sampling off (whole box, plain FCOS).
        extra_valid: optional (P, G) bool further restricting the candidates (EmbedMask:
            the point must lie on the object's mask).

    Returns:
        (P,) long index of the assigned object, -1 for background.
    """
    num_points, num_gts = points.shape[0], gt_boxes.shape[0]
    if num_gts == 0:
        return torch.full((num_points,), -1, dtype=torch.long, device=points.device)
    dists = box_side_distances(points, gt_boxes)  # (P, G, 4)
    if radius > 0:
        if centers is None:
            centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        half = (point_strides * radius)[:, None, None]  # (P, 1, 1)
        lo = torch.maximum(centers[None] - half, gt_boxes[None, :, :2])  # (P, G, 2)
        hi = torch.minimum(centers[None] + half, gt_boxes[None, :, 2:])
        inside = torch.cat((points[:, None] - lo, hi - points[:, None]), -1).min(-1).values > 0
    else:
        inside = dists.min(-1).values > 0
    max_dist = dists.max(-1).values
    in_range = (max_dist >= regress_ranges[:, None, 0]) & (max_dist <= regress_ranges[:, None, 1])
    areas = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))[None]
    valid = inside & in_range
    if extra_valid is not None:
        valid = valid & extra_valid
    areas = areas.expand(num_points, num_gts).masked_fill(~valid, INF)
    min_area, index = areas.min(dim=1)
    return torch.where(min_area >= INF, torch.full_like(index, -1), index)
