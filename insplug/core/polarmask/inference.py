"""PolarMask inference: ray lengths to polygons and polygons to binary masks.

Shape shorthand: N instances, R rays, H x W output grid.

The polygon of an instance joins the endpoints of its R rays in angle order; it is star-shaped
about its centre, so a pixel lies inside exactly when its distance to the centre is at most the
polygon's radius along the pixel's direction, which is the distance to the chord between the
two rays enclosing that direction.
"""
import math

import torch
from torch import Tensor

from .targets import ray_angles


def rays_to_polygons(centers: Tensor, rays: Tensor) -> Tensor:
    """Polygon vertices of polar contours.

    Args:
        centers: (N, 2) xy.
        rays: (N, R) ray lengths.

    Returns:
        (N, R, 2) xy vertices in angle order.
    """
    angles = ray_angles(rays.shape[1], rays.device, rays.dtype)
    return centers[:, None] + rays[..., None] * torch.stack((angles.cos(), angles.sin()), -1)


def polar_masks(centers: Tensor, rays: Tensor, height: int, width: int,
                chunk: int = 32) -> Tensor:
    """Rasterise polar polygons: pixel (i, j) (centre j+0.5, i+0.5) is in when inside the polygon.

    Args:
        centers: (N, 2) xy polygon centres.
        rays: (N, R) non-negative ray lengths.
        height, width: output grid size.
        chunk: instances rasterised at once (bounds memory at chunk * H * W).

    Returns:
        (N, H, W) bool.
    """
    num, num_rays = rays.shape
    out = torch.zeros((num, height, width), dtype=torch.bool, device=rays.device)
    step = 2 * math.pi / num_rays
    ys = torch.arange(height, device=rays.device, dtype=rays.dtype) + 0.5
    xs = torch.arange(width, device=rays.device, dtype=rays.dtype) + 0.5
    for begin in range(0, num, chunk):
        c = centers[begin:begin + chunk]
        r = rays[begin:begin + chunk]
        dx = xs[None, None, :] - c[:, 0, None, None]  # (n, 1, W)
        dy = ys[None, :, None] - c[:, 1, None, None]  # (n, H, 1)
        dist = torch.sqrt(dx * dx + dy * dy)          # (n, H, W)
        angle = torch.atan2(dy, dx).expand_as(dist) % (2 * math.pi)
        lower = torch.floor(angle / step).long().clamp(max=num_rays - 1)
        frac = angle - lower * step                    # angle past the lower ray, [0, step)
        d0 = _gather_rays(r, lower)
        d1 = _gather_rays(r, (lower + 1) % num_rays)
        # radius of the chord from (d0 at 0) to (d1 at step) along direction frac:
        # r = d0 d1 sin(step) / (d0 sin(frac) + d1 sin(step - frac))
        denom = d0 * torch.sin(frac) + d1 * torch.sin(step - frac)
        radius = d0 * d1 * math.sin(step) / denom.clamp(min=1e-12)
        out[begin:begin + chunk] = dist <= radius
    return out


def _gather_rays(rays: Tensor, index: Tensor) -> Tensor:
    """Ray lengths at per-pixel ray indices.

    Args:
        rays: (n, R).
        index: (n, H, W) long in [0, R).

    Returns:
        (n, H, W).
    """
    return torch.gather(rays, 1, index.flatten(1)).view_as(index).to(rays.dtype)


def polygon_boxes(centers: Tensor, rays: Tensor) -> Tensor:
    """Tight boxes of the polar polygons.

    Args:
        centers: (N, 2) xy.
        rays: (N, R) ray lengths.

    Returns:
        (N, 4) x1, y1, x2, y2.
    """
    vertices = rays_to_polygons(centers, rays)
    return torch.cat((vertices.min(dim=1).values, vertices.max(dim=1).values), dim=1)
