"""Assembling k x k instance-sensitive score maps into per-window masks (InstanceFCN).

Shapes: B images; ``maps`` (B, k*k, H, W) score maps (channel ``ky * k + kx`` scores "pixel is
in the (ky, kx) cell of an instance"); N windows of m x m feature cells, given by their
top-left cells (y0, x0) (may lie partly outside the map); output (N, m, m).

Cell (i, j) of a window copies the value at feature position (y0 + i, x0 + j) of the map of its
relative position (ky, kx) = (floor(i k / m), floor(j k / m)) (Dai et al., ECCV 2016, Sec. 3:
"the assembling module ... copies the (ky, kx)-th sub-window from the (ky, kx)-th score map").
There are no parameters; positions outside the map read ``fill``.
"""
import torch
from torch import Tensor


def window_cell_index(window: int, k: int, device=None) -> Tensor:
    """Score-map channel of each window cell.

    Args:
        window: m.
        k: number of cells per side.

    Returns:
        (m, m) int64 ``floor(i k / m) * k + floor(j k / m)``.
    """
    i = torch.arange(window, device=device)
    cell = torch.div(i * k, window, rounding_mode='floor')
    return cell[:, None] * k + cell[None, :]


def assemble_windows(maps: Tensor, batch_idx: Tensor, y0: Tensor, x0: Tensor, window: int,
                     fill: float = 0.0) -> Tensor:
    """Assemble one m x m window per (batch_idx, y0, x0).

    Args:
        maps: (B, k*k, H, W).
        batch_idx, y0, x0: (N,) int64 image index and top-left feature cell of each window.
        window: m.
        fill: value of window cells outside the map.

    Returns:
        (N, m, m), differentiable w.r.t. ``maps``.
    """
    b, kk, h, w = maps.shape
    k = int(round(kk ** 0.5))
    if k * k != kk:
        raise ValueError(f'assemble_windows: {kk} channels is not k*k')
    chan = window_cell_index(window, k, maps.device)
    off = torch.arange(window, device=maps.device)
    ys = y0[:, None, None] + off[None, :, None]  # (N, m, 1)
    xs = x0[:, None, None] + off[None, None, :]  # (N, 1, m)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    flat = ((batch_idx[:, None, None] * kk + chan[None]) * h + ys.clamp(0, h - 1)) * w \
        + xs.clamp(0, w - 1)
    vals = maps.reshape(-1)[flat]
    return torch.where(inside, vals, vals.new_full((), fill))
