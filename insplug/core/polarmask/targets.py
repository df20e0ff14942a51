"""PolarMask training targets: ray lengths from a point to the mask contour, polar centerness.

Shape shorthand: G objects, H x W mask grid, P points, R rays (36), B boundary pixels.

Ray r points along angle ``theta_r = 2 * pi * r / R`` in image coordinates, i.e. direction
(cos theta_r, sin theta_r) with x to the right and y downwards. The target of ray r from a
point is the distance to the farthest contour pixel seen in that direction: contour pixels are
binned to the nearest ray (deviation at most half the ray spacing); within a ray's bin the
pixels of smallest whole-degree deviation are preferred and among them the farthest one wins.
A ray that no contour pixel falls near takes the mean of its two neighbours (or ``min_length``).
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor


def ray_angles(num_rays: int = 36, device=None, dtype=torch.float32) -> Tensor:
    """Angles of the rays.

    Returns:
        (R,) angles in radians, 0, 2 pi / R, ...
    """
    return torch.arange(num_rays, device=device, dtype=dtype) * (2 * math.pi / num_rays)


def mask_boundary(masks: Tensor) -> Tensor:
    """Contour pixels: foreground pixels with a background 4-neighbour (or on the image border).

    Args:
        masks: (G, H, W) bool or {0, 1}.

    Returns:
        (G, H, W) bool.
    """
    fg = masks.bool()
    padded = F.pad(fg.float()[:, None], (1, 1, 1, 1))
    # erosion by the 4-neighbourhood cross: min over the centre and its four neighbours
    neighbours = torch.stack((padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                              padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]), 0)
    eroded = neighbours.min(dim=0).values[:, 0] > 0
    return fg & ~eroded


def polar_ray_targets(points: Tensor, gt_index: Tensor, masks: Tensor, num_rays: int = 36,
                      min_length: float = 1e-6) -> Tensor:
    """Ray lengths from each point to the contour of its object's mask.

    Args:
        points: (P, 2) xy in the mask grid's coordinates (pixel (i, j) centred at j+0.5, i+0.5).
        gt_index: (P,) long index into ``masks`` of each point's object (all >= 0).
        masks: (G, H, W) bool masks.
        num_rays: R.
        min_length: floor of every ray length (targets must be > 0 for the log loss).

    Returns:
        (P, R) float ray lengths.
    """
    num_points = points.shape[0]
    out = points.new_zeros((num_points, num_rays))
    if num_points == 0:
        return out
    edge = mask_boundary(masks)
    g_idx, ys, xs = edge.nonzero(as_tuple=True)  # sorted by object index
    counts = torch.bincount(g_idx, minlength=masks.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    # enumerate (point, contour pixel of its object) pairs without a Python loop
    pair_counts = counts[gt_index]
    pair_point = torch.repeat_interleave(torch.arange(num_points, device=points.device),
                                         pair_counts)
    offset = torch.arange(pair_point.numel(), device=points.device) - \
        torch.repeat_interleave(torch.cumsum(pair_counts, 0) - pair_counts, pair_counts)
    pixel = starts[gt_index][pair_point] + offset
    dx = xs[pixel].to(points.dtype) + 0.5 - points[pair_point, 0]
    dy = ys[pixel].to(points.dtype) + 0.5 - points[pair_point, 1]
    dist = torch.sqrt(dx * dx + dy * dy)
    step = 360.0 / num_rays
    angle = torch.rad2deg(torch.atan2(dy, dx)) % 360.0
    ray = torch.round(angle / step).long() % num_rays
    deviation = torch.round((angle - ray * step + 180.0) % 360.0 - 180.0).abs()
    # prefer the smallest whole-degree deviation, then the largest distance
    big = float(dist.max()) + 1.0 if dist.numel() else 1.0
    score = dist - deviation * big
    flat = (pair_point * num_rays + ray)
    best = torch.full((num_points * num_rays,), -float('inf'), dtype=points.dtype,
                      device=points.device)
    best = best.scatter_reduce(0, flat, score, reduce='amax')
    found = best > -float('inf')
    # recover the distance of the winning pixel: score = dist - deviation * big, dist < big
    lengths = torch.where(found, torch.remainder(best, big), torch.zeros_like(best))
    lengths = lengths.view(num_points, num_rays)
    found = found.view(num_points, num_rays)
    # rays that no contour pixel falls near: mean of the neighbours where both are found
    prev_len, next_len = lengths.roll(1, 1), lengths.roll(-1, 1)
    prev_ok, next_ok = found.roll(1, 1), found.roll(-1, 1)
    filled = torch.where(prev_ok & next_ok, (prev_len + next_len) / 2, torch.zeros_like(lengths))
    lengths = torch.where(found, lengths, filled)
    return lengths.clamp(min=min_length)


def polar_centerness(rays: Tensor) -> Tensor:
    """Polar centerness ``sqrt(min_r d_r / max_r d_r)``.

    Args:
        rays: (P, R) positive ray lengths.

    Returns:
        (P,) in (0, 1].
    """
    return torch.sqrt(rays.min(dim=1).values / rays.max(dim=1).values.clamp(min=1e-12))
