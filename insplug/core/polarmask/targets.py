"""PolarMask training targets as the official release computes them (xieenze/PolarMask,
``mmdet/datasets/coco_seg.py``: ``get_single_centerpoint``, ``polar_target_single``,
``get_mask_sample_region``, ``get_36_coordinates``).

Shape shorthand: G objects of one image, H x W mask grid, P points (all levels concatenated),
N positive points, R rays (36), C contour pixels (all objects concatenated).

Ray conventions. insplug's ray j points along ``phi_j = j * 360 / R`` degrees in image
coordinates: direction ``(cos phi_j, sin phi_j)``, x right, y down. The official ray k points
along ``(sin theta_k, cos theta_k)`` with ``theta_k = k * 360 / R`` (the angle is measured from
+y towards +x), i.e. ``phi = 90 - theta``: insplug ray j is official ray ``(R/4 - j) mod R``
(:func:`official_ray_order`; the map is its own inverse). The targets are computed in the
official angle space, then re-indexed, so they are the official ones exactly.

Official target recipe, per object:

1. The contours of the mask (OpenCV ``findContours``, ``RETR_TREE``, ``CHAIN_APPROX_NONE``);
   only the one of largest ``contourArea`` is used (holes and other parts are ignored).
2. Its centre is the polygon centroid (shoelace, float64, accumulated in contour order),
   truncated to integers; when the polygon area is 0, the truncated mean of its points.
3. Positive points (:func:`polar_assign`): inside the object's box clipped to the square of
   half-size ``radius * stride`` around that centre (strict), the max box-side distance in the
   level's regress range (inclusive), the object of smallest ``(w + 1) * (h + 1)`` wins.
   Boxes use the legacy inclusive convention ``x2 = x1 + w - 1``.
4. Rays (:func:`polar_ray_targets`), float32: the angle of each contour pixel seen from the
   point, ``atan2(dx, dy)`` in degrees in [0, 360), truncated to an integer; ray k takes the
   largest distance among the pixels at integer angle ``10k``, else ``10k+1``, ``10k-1``,
   ``10k+2``, ``10k-2``, ``10k+3``, ``10k-3`` (no wrap-around at 0 / 360), else ``1e-6``.
5. Centerness: ``sqrt(min_k d_k / max_k d_k)`` of those rays.
"""
import math
from typing import List, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

INF = 1e8
MISSING_RAY = 1e-6
# official search order around 10k degrees: offsets 0, +1, -1, +2, -2, +3, -3 -> rank 0..6
_MAX_OFFSET = 3


def ray_angles(num_rays: int = 36, device=None, dtype=torch.float32) -> Tensor:
    """Angles of insplug's rays.

    Returns:
        (R,) angles in radians, 0, 2 pi / R, ... (direction (cos, sin) in image coordinates).
    """
    return torch.arange(num_rays, device=device, dtype=dtype) * (2 * math.pi / num_rays)


def official_ray_order(num_rays: int = 36, device=None) -> Tensor:
    """Index map between insplug's and the official ray order (its own inverse).

    ``insplug_rays = official_rays[:, official_ray_order(R)]`` and
    ``official_rays = insplug_rays[:, official_ray_order(R)]``.

    Args:
        num_rays: R, a multiple of 4 (90 degrees must fall on a ray).

    Returns:
        (R,) long.
    """
    if num_rays % 4:
        raise ValueError(f'official_ray_order: num_rays must be a multiple of 4, got {num_rays}')
    return (num_rays // 4 - torch.arange(num_rays, device=device)) % num_rays


def _polygon_centroid(contour: np.ndarray) -> Tuple[int, int]:
    """Official ``get_centerpoint`` / fallback of ``get_single_centerpoint`` for one contour.

    Args:
        contour: (L, 2) int xy, in OpenCV's order.

    Returns:
        (x, y) ints: the truncated shoelace centroid, or the truncated mean of the points when
        the signed area is 0 (the official code falls back on the exception raised there).
    """
    pts = contour.astype(np.int64)
    lat, lng = pts[:, 0], pts[:, 1]
    lat1, lng1 = np.roll(lat, 1), np.roll(lng, 1)  # point i-1 (the last one for i = 0)
    fg = (lat * lng1 - lng * lat1) / 2.0
    # sequential float64 accumulation, in order, as the official Python loop does
    area = np.cumsum(fg)[-1]
    sx = np.cumsum(fg * (lat + lat1) / 3.0)[-1]
    sy = np.cumsum(fg * (lng + lng1) / 3.0)[-1]
    if area != 0:
        x, y = sx / area, sy / area
        if math.isfinite(x) and math.isfinite(y):
            return int(x), int(y)
    mean = pts.astype(np.float64).sum(0) / len(pts)
    return int(mean[0]), int(mean[1])


def largest_contours(masks) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Largest outer contour and official centre of every object (OpenCV, one call per object).

    Args:
        masks: (G, H, W) bool / uint8 array or tensor.

    Returns:
        centers (G, 2) float32 xy (integer-valued), valid (G,) bool (False: empty mask, the
        object gets no positives), contour_xy (C, 2) float32 pixel coordinates, contour_obj
        (C,) long object index of each contour pixel.
    """
    if isinstance(masks, Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.dtype != np.uint8:  # OpenCV reads any non-zero uint8 pixel as foreground
        masks = (masks != 0).astype(np.uint8)
    centers, valid, contours, owners = [], [], [], []
    for g, mask in enumerate(masks):
        found = cv2.findContours(np.ascontiguousarray(mask), cv2.RETR_TREE,
                                 cv2.CHAIN_APPROX_NONE)[-2]
        if len(found) == 0:
            centers.append((0, 0))
            valid.append(False)
            continue
        # stable sort, largest first: ties keep OpenCV's order, as the official list.sort
        largest = sorted(found, key=cv2.contourArea, reverse=True)[0][:, 0, :]
        centers.append(_polygon_centroid(largest))
        valid.append(True)
        contours.append(largest)
        owners.append(np.full(len(largest), g, dtype=np.int64))
    contour_xy = (torch.from_numpy(np.concatenate(contours).astype(np.float32)) if contours
                  else torch.zeros((0, 2), dtype=torch.float32))
    contour_obj = (torch.from_numpy(np.concatenate(owners)) if owners
                   else torch.zeros((0,), dtype=torch.long))
    return (torch.tensor(centers, dtype=torch.float32).reshape(-1, 2),
            torch.tensor(valid, dtype=torch.bool), contour_xy, contour_obj)


def polar_assign(points: Tensor, point_strides: Tensor, regress_ranges: Tensor,
                 boxes: Tensor, centers: Tensor, valid: Tensor = None,
                 radius: float = 1.5) -> Tensor:
    """Official PolarMask point assignment (``polar_target_single`` with mask-centre sampling).

    Args:
        points: (P, 2) xy.
        point_strides: (P,) stride of each point's level.
        regress_ranges: (P, 2) inclusive bounds of the max box-side distance.
        boxes: (G, 4) x1, y1, x2, y2 in the legacy inclusive convention (x2 = x1 + w - 1).
        centers: (G, 2) xy sampling centres (:func:`largest_contours`).
        valid: optional (G,) bool; invalid objects get no points.
        radius: half-size of the sampling square in strides (1.5).

    Returns:
        (P,) long object index, -1 for background.
    """
    num_points, num_gts = points.shape[0], boxes.shape[0]
    if num_gts == 0:
        return torch.full((num_points,), -1, dtype=torch.long, device=points.device)
    x, y = points[:, 0, None], points[:, 1, None]
    sides = torch.stack((x - boxes[None, :, 0], y - boxes[None, :, 1],
                         boxes[None, :, 2] - x, boxes[None, :, 3] - y), -1)  # (P, G, 4)
    half = (point_strides * radius)[:, None, None]
    lo = torch.maximum(centers[None] - half, boxes[None, :, :2])   # (P, G, 2)
    hi = torch.minimum(centers[None] + half, boxes[None, :, 2:])
    inside = torch.cat((points[:, None] - lo, hi - points[:, None]), -1).min(-1).values > 0
    max_dist = sides.max(-1).values
    in_range = (max_dist >= regress_ranges[:, None, 0]) & (max_dist <= regress_ranges[:, None, 1])
    ok = inside & in_range
    if valid is not None:
        ok = ok & valid[None].to(ok.device)
    areas = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))[None]
    areas = areas.expand(num_points, num_gts).masked_fill(~ok, INF)
    min_area, index = areas.min(dim=1)
    return torch.where(min_area == INF, torch.full_like(index, -1), index)


def polar_ray_targets(points: Tensor, gt_index: Tensor, contour_xy: Tensor, contour_obj: Tensor,
                      num_rays: int = 36, chunk: int = 4_000_000) -> Tensor:
    """Official ray targets, vectorised over points and contour pixels.

    Args:
        points: (N, 2) xy of positive points.
        gt_index: (N,) long object of each point.
        contour_xy: (C, 2) contour pixel coordinates (:func:`largest_contours`).
        contour_obj: (C,) long object of each contour pixel, sorted (grouped by object).
        num_rays: R (official: 36; rays every 360 / R degrees, 360 / R an integer).
        chunk: bound on the (point, contour pixel) pairs processed at once.

    Returns:
        (N, R) float32 ray lengths in insplug's ray order (missing rays ``1e-6``).
    """
    step = 360 // num_rays
    if step * num_rays != 360:
        raise ValueError(f'polar_ray_targets: 360 / num_rays must be an integer, got {num_rays}')
    device = points.device
    num = points.shape[0]
    best = torch.full((num * num_rays,), 7, dtype=torch.long, device=device)
    longest = torch.zeros((num * num_rays,), dtype=torch.float32, device=device)
    if num > 0 and contour_xy.shape[0] > 0:
        contour_xy = contour_xy.to(device=device, dtype=torch.float32)
        contour_obj = contour_obj.to(device)
        num_obj = int(max(contour_obj.max(), gt_index.max())) + 1
        counts = torch.bincount(contour_obj, minlength=num_obj)
        starts = torch.cumsum(counts, 0) - counts
        pts = points.to(torch.float32)
        pair_counts = counts[gt_index]
        # split the points so that each piece holds at most `chunk` pairs
        ends = torch.cumsum(pair_counts, 0)
        begin = 0
        while begin < num:
            base = int(ends[begin - 1]) if begin > 0 else 0
            end = int(torch.searchsorted(ends, torch.tensor(base + chunk, device=device),
                                         right=True))
            end = max(end, begin + 1)
            _rays_of(pts, gt_index, starts, pair_counts, contour_xy, begin, end, num_rays, step,
                     best, longest)
            begin = end
    rays = torch.where(best < 7, longest, torch.full_like(longest, MISSING_RAY))
    rays = rays.view(num, num_rays)  # official order
    return rays[:, official_ray_order(num_rays, device)]


def _rays_of(pts, gt_index, starts, pair_counts, contour_xy, begin, end, num_rays, step,
             best, longest):
    """Scatter the (point, contour pixel) pairs of points ``begin:end`` into ``best`` (search
    rank per (point, official ray)) and ``longest`` (distance at that rank); in place."""
    device = pts.device
    counts = pair_counts[begin:end]
    point = torch.repeat_interleave(torch.arange(begin, end, device=device), counts)
    offset = torch.arange(point.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    pixel = starts[gt_index[point]] + offset
    # the official float32 expressions, in the same order
    x = contour_xy[pixel, 0] - pts[point, 0]
    y = contour_xy[pixel, 1] - pts[point, 1]
    angle = torch.atan2(x, y) * 180 / np.pi
    angle[angle < 0] += 360
    angle = angle.int().long()
    dist = torch.sqrt(x ** 2 + y ** 2)
    ray = torch.div(angle + step // 2, step, rounding_mode='floor')
    off = angle - ray * step
    ok = (off.abs() <= _MAX_OFFSET) & (ray < num_rays)
    rank = 2 * off.abs() - (off > 0).long()
    flat = (point * num_rays + ray)[ok]
    rank, dist = rank[ok], dist[ok]
    best.scatter_reduce_(0, flat, rank, reduce='amin')
    keep = rank == best[flat]
    longest.scatter_reduce_(0, flat[keep], dist[keep], reduce='amax')


def polar_centerness(rays: Tensor) -> Tensor:
    """Polar centerness ``sqrt(min_r d_r / max_r d_r)``.

    Args:
        rays: (P, R) positive ray lengths.

    Returns:
        (P,) in (0, 1].
    """
    return torch.sqrt(rays.min(dim=1).values / rays.max(dim=1).values)


def polar_targets_single(points: List[Tensor], strides, regress_ranges, boxes: Tensor,
                         labels: Tensor, masks, num_classes: int, num_rays: int = 36,
                         radius: float = 1.5, box_offset: float = 1.0):
    """All official targets of one image.

    Args:
        points: list over levels of (P_l, 2) xy.
        strides: per-level strides.
        regress_ranges: per-level (lo, hi).
        boxes: (G, 4) x1, y1, x2, y2 (mmdet convention, x2 = x1 + w).
        labels: (G,) long in [0, K).
        masks: (G, H, W) bool / uint8 (array or tensor).
        num_classes: K (the background label).
        num_rays: R.
        radius: centre-sampling radius in strides.
        box_offset: subtracted from x2, y2 to get the official inclusive boxes (1.0); 0 keeps
            mmdet's boxes.

    Returns:
        labels (P,) long in [0, K] (K: background), box targets (P, 4) l, t, r, b,
        ray targets (P, R) (1 at background points), index (P,) long object index or -1.
    """
    flat = torch.cat(points)
    device, dtype = flat.device, flat.dtype
    point_strides = torch.cat([p.new_full((len(p),), float(s)) for p, s in zip(points, strides)])
    ranges = torch.cat([p.new_tensor(r)[None].expand(len(p), 2)
                        for p, r in zip(points, regress_ranges)])
    boxes = boxes.to(device=device, dtype=dtype).clone()
    boxes[:, 2:] -= box_offset
    num_points = flat.shape[0]
    out_labels = torch.full((num_points,), num_classes, dtype=torch.long, device=device)
    box_t = flat.new_zeros((num_points, 4))
    ray_t = flat.new_ones((num_points, num_rays))
    if boxes.shape[0] == 0:
        return out_labels, box_t, ray_t, torch.full_like(out_labels, -1)
    centers, valid, contour_xy, contour_obj = largest_contours(masks)
    index = polar_assign(flat, point_strides, ranges, boxes, centers.to(flat), valid.to(device),
                         radius)
    pos = index >= 0
    if pos.any():
        p, g = flat[pos], index[pos]
        b = boxes[g]
        out_labels[pos] = labels.to(device)[g]
        box_t[pos] = torch.cat((p - b[:, :2], b[:, 2:] - p), 1)
        # on the CPU, where the release computes them (its data loader): the float32 atan2 of
        # another device may round an angle on an integer degree the other way
        ray_t[pos] = polar_ray_targets(p.cpu(), g.cpu(), contour_xy, contour_obj,
                                       num_rays).to(device=device, dtype=dtype)
    return out_labels, box_t, ray_t, index
