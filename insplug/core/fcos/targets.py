"""FCOS training targets (Tian et al., ICCV 2019), as the official releases compute them.

Shape shorthand: P points (all pyramid levels of one image concatenated, finest level first),
L levels, G ground-truth objects of one image, K classes.

* Points: level l with stride s has the points ``(s * j + s // 2, s * i + s // 2)``
  (AdelaiDet / FCOS ``compute_locations``; mmdet's ``offset=0.5`` is the same for even strides).
* Assignment: :func:`insplug.core.assigners.center_sampling.center_sampling_assign` computes
  exactly the official rule (centre sampling with radius ``POS_RADIUS * stride`` clipped to the
  box, strict ``> 0`` inside test, regress range ``lo <= max(l, t, r, b) <= hi`` with both ends
  inclusive, smallest box area wins, first GT on ties); this module reuses it.
* Regression targets are (l, t, r, b) in pixels; with ``norm_reg_targets`` (AdelaiDet,
  FCOS-official ``NORM_REG_TARGETS``) the loss sees them divided by the level's stride.
* Centerness target: ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``.
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from insplug.core.assigners.center_sampling import center_sampling_assign

__all__ = ['INF', 'fcos_locations', 'regress_ranges_from_sizes', 'level_point_info',
           'fcos_targets', 'centerness_targets']

INF = 100000000


def fcos_locations(featmap_sizes: Sequence[Tuple[int, int]], strides: Sequence[int],
                   dtype=torch.float32, device=None) -> List[Tensor]:
    """Point coordinates of every level (AdelaiDet ``compute_locations``).

    Args:
        featmap_sizes: L pairs (H_l, W_l).
        strides: L ints.

    Returns:
        L tensors (H_l * W_l, 2) xy, row-major (x fastest), ``s * index + s // 2``.
    """
    out = []
    for (h, w), s in zip(featmap_sizes, strides):
        xs = torch.arange(0, w * s, step=s, dtype=dtype, device=device)
        ys = torch.arange(0, h * s, step=s, dtype=dtype, device=device)
        yy, xx = torch.meshgrid(ys, xs, indexing='ij')
        out.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1) + s // 2)
    return out


def regress_ranges_from_sizes(sizes_of_interest: Sequence[float]) -> List[Tuple[float, float]]:
    """``SIZES_OF_INTEREST`` [64, 128, 256, 512] -> [(-1, 64), (64, 128), ..., (512, INF)]."""
    out, prev = [], -1
    for s in sizes_of_interest:
        out.append((prev, s))
        prev = s
    out.append((prev, INF))
    return out


def level_point_info(points: Sequence[Tensor], strides: Sequence[int],
                     regress_ranges: Sequence[Tuple[float, float]]) -> Tuple[Tensor, Tensor, Tensor]:
    """Concatenate the levels' points with their stride and regress range.

    Args:
        points: L tensors (P_l, 2).
        strides: L ints. regress_ranges: L (lo, hi) pairs.

    Returns:
        points (P, 2), point_strides (P,), ranges (P, 2).
    """
    pts = torch.cat(list(points), 0)
    pstr = torch.cat([p.new_full((p.shape[0],), float(s)) for p, s in zip(points, strides)])
    rng = torch.cat([p.new_tensor(r)[None].expand(p.shape[0], 2)
                     for p, r in zip(points, regress_ranges)])
    return pts, pstr, rng


def fcos_targets(points: Tensor, point_strides: Tensor, regress_ranges: Tensor,
                 gt_boxes: Tensor, gt_labels: Tensor, num_classes: int,
                 center_sample_radius: float = 1.5, centers: Tensor = None,
                 extra_valid: Tensor = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-point class, (l, t, r, b) and matched-object index of one image.

    Args:
        points: (P, 2) xy. point_strides: (P,). regress_ranges: (P, 2).
        gt_boxes: (G, 4) x1, y1, x2, y2. gt_labels: (G,) in [0, K).
        num_classes: K (the background label).
        center_sample_radius: ``POS_RADIUS`` (1.5); ``<= 0`` is ``CENTER_SAMPLE: False``.
        centers: optional (G, 2) sampling centres (default: box centres; CondInst / PolarMask
            pass mask centres).
        extra_valid: optional (P, G) bool further restricting the candidates.

    Returns:
        labels (P,) long, K for background; reg_targets (P, 4) pixels (zeros for background);
        gt_inds (P,) long, -1 for background.
    """
    gt_inds = center_sampling_assign(points, point_strides, regress_ranges, gt_boxes, centers,
                                     center_sample_radius, extra_valid)
    labels = gt_labels.new_full((points.shape[0],), num_classes).long()
    reg = points.new_zeros((points.shape[0], 4))
    pos = gt_inds >= 0
    if pos.any():
        labels[pos] = gt_labels[gt_inds[pos]].long()
        b, p = gt_boxes[gt_inds[pos]].to(points.dtype), points[pos]
        reg[pos] = torch.cat((p - b[:, :2], b[:, 2:] - p), 1)
    return labels, reg, gt_inds


def centerness_targets(reg_targets: Tensor) -> Tensor:
    """Official centerness target.

    Args:
        reg_targets: (N, 4) positive (l, t, r, b) (any common scale).

    Returns:
        (N,) ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``.
    """
    if reg_targets.numel() == 0:
        return reg_targets.new_zeros(reg_targets.shape[0])
    lr = reg_targets[:, [0, 2]]
    tb = reg_targets[:, [1, 3]]
    return torch.sqrt((lr.min(-1).values / lr.max(-1).values)
                      * (tb.min(-1).values / tb.max(-1).values))
