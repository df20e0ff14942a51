"""Position-sensitive RoI pooling (R-FCN / FCIS) as exact box sums on a summed-area table.

Shapes: B images; a score map of C_out * G * G channels (G x G position-sensitive groups, the
channel of output class/part ``c`` at group cell (gy, gx) is ``(c * G + gy) * G + gx``); R RoIs
given as (R, 5) ``batch_index, x1, y1, x2, y2`` in image pixels; each RoI is pooled into
P x P bins (P a multiple of G or equal to it); output (R, C_out, P, P).

Bin (py, px) of a RoI averages the feature cells ``[hstart, hend) x [wstart, wend)`` of the
channel of group cell (gy, gx) = (floor(py * G / P), floor(px * G / P)); an empty bin gives 0.
Two conventions for the RoI's extent on the feature map:

* ``'mxnet'`` (MXNet's ``contrib.PSROIPooling``, the FCIS / R-FCN release): start
  ``round(x1) * scale``, end ``(round(x2) + 1) * scale`` (floats; width at least 0.1),
  ``hstart = floor(py * bin + start)``, ``hend = ceil((py + 1) * bin + start)``; ``round``
  rounds half away from zero;
* ``'torchvision'`` (``torchvision.ops.ps_roi_pool``, P == G): start ``round(x1 * scale)``,
  end ``round(x2 * scale)`` (integers; width at least 1), ``hstart = floor(py * bin) + start``,
  ``hend = ceil((py + 1) * bin) + start``.

Both clip bins to the map. The sums are read from a float64 summed-area table, so the result is
the bin average up to float64 rounding, for any RoI size, without a per-RoI loop; gradients flow
to the score map (each cell of a bin receives 1 / area of the bin's gradient, as in MXNet).
"""
import torch
from torch import Tensor

# RoIs pooled at once (bounds the (R, C_out, P, P) float64 gather)
ROIS_PER_CHUNK = 128


def round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds them to even).

    Args:
        x: any float tensor.

    Returns:
        tensor of the same shape and dtype.
    """
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def ps_bin_bounds(rois: Tensor, pooled_size: int, spatial_scale: float, height: int,
                  width: int, convention: str = 'mxnet', coord_dtype=torch.float32):
    """Integer feature-cell bounds of every RoI bin.

    Args:
        rois: (R, 5) batch index, x1, y1, x2, y2 (image pixels).
        pooled_size: P.
        spatial_scale: feature cells per image pixel (1 / stride).
        height, width: feature map size.
        convention: 'mxnet' or 'torchvision' (see the module docstring).
        coord_dtype: float type of the bin arithmetic (the kernels compute in the feature
            dtype, float32 in practice: ``3 / 21 * 7`` is 1 in float64 but above 1 in float32,
            which moves a bin end by a cell).

    Returns:
        hstart, hend: (R, P) int64 in [0, height]; wstart, wend: (R, P) int64 in [0, width].
    """
    r = rois.detach().to(coord_dtype)
    steps = torch.arange(pooled_size, dtype=coord_dtype, device=rois.device)
    if convention == 'mxnet':
        scale = torch.tensor(spatial_scale, dtype=coord_dtype)
        start_w = round_half_away(r[:, 1]) * scale
        start_h = round_half_away(r[:, 2]) * scale
        end_w = (round_half_away(r[:, 3]) + 1.0) * scale
        end_h = (round_half_away(r[:, 4]) + 1.0) * scale
        roi_w = (end_w - start_w).clamp(min=0.1)
        roi_h = (end_h - start_h).clamp(min=0.1)
        bin_w, bin_h = roi_w / pooled_size, roi_h / pooled_size
        hstart = torch.floor(steps[None] * bin_h[:, None] + start_h[:, None])
        hend = torch.ceil((steps[None] + 1) * bin_h[:, None] + start_h[:, None])
        wstart = torch.floor(steps[None] * bin_w[:, None] + start_w[:, None])
        wend = torch.ceil((steps[None] + 1) * bin_w[:, None] + start_w[:, None])
    elif convention == 'torchvision':
        scale = torch.tensor(spatial_scale, dtype=coord_dtype)
        start_w = round_half_away(r[:, 1] * scale)
        start_h = round_half_away(r[:, 2] * scale)
        end_w = round_half_away(r[:, 3] * scale)
        end_h = round_half_away(r[:, 4] * scale)
        roi_w = (end_w - start_w).clamp(min=1.0)
        roi_h = (end_h - start_h).clamp(min=1.0)
        bin_w, bin_h = roi_w / pooled_size, roi_h / pooled_size
        hstart = torch.floor(steps[None] * bin_h[:, None]) + start_h[:, None]
        hend = torch.ceil((steps[None] + 1) * bin_h[:, None]) + start_h[:, None]
        wstart = torch.floor(steps[None] * bin_w[:, None]) + start_w[:, None]
        wend = torch.ceil((steps[None] + 1) * bin_w[:, None]) + start_w[:, None]
    else:
        raise ValueError(f"convention must be 'mxnet' or 'torchvision', got {convention!r}")
    return (hstart.clamp(0, height).long(), hend.clamp(0, height).long(),
            wstart.clamp(0, width).long(), wend.clamp(0, width).long())


def ps_channel_index(out_channels: int, group_size: int, pooled_size: int,
                     device=None) -> Tensor:
    """Input channel read by each output bin.

    Args:
        out_channels: C_out.
        group_size: G.
        pooled_size: P.

    Returns:
        (C_out, P, P) int64: ``(c * G + gy) * G + gx`` with ``g = floor(p * G / P)``.
    """
    p = torch.arange(pooled_size, device=device)
    g = torch.div(p * group_size, pooled_size, rounding_mode='floor').clamp(0, group_size - 1)
    c = torch.arange(out_channels, device=device)
    return (c[:, None, None] * group_size + g[None, :, None]) * group_size + g[None, None, :]


def summed_area_table(x: Tensor) -> Tensor:
    """Zero-padded float64 integral image.

    Args:
        x: (B, C, H, W).

    Returns:
        (B, C, H + 1, W + 1) float64, ``S[..., i, j] = x[..., :i, :j].sum()``.
    """
    s = x.double().cumsum(-1).cumsum(-2)
    return torch.nn.functional.pad(s, (1, 0, 1, 0))


def ps_roi_pool(features: Tensor, rois: Tensor, out_channels: int, group_size: int,
                pooled_size: int, spatial_scale: float, convention: str = 'mxnet',
                coord_dtype=torch.float32) -> Tensor:
    """Position-sensitive average RoI pooling (see the module docstring).

    Args:
        features: (B, C_out * G * G, H, W) score maps.
        rois: (R, 5) batch index, x1, y1, x2, y2 in image pixels.
        out_channels: C_out.
        group_size: G.
        pooled_size: P.
        spatial_scale: 1 / feature stride.
        convention: 'mxnet' (FCIS release) or 'torchvision'.
        coord_dtype: float type of the bin-bound arithmetic (see :func:`ps_bin_bounds`).

    Returns:
        (R, C_out, P, P) in the features' dtype.
    """
    b, c, h, w = features.shape
    if c != out_channels * group_size * group_size:
        raise ValueError(f'ps_roi_pool: {c} channels is not out_channels * group_size^2 = '
                         f'{out_channels} * {group_size}^2')
    num = rois.shape[0]
    if num == 0:
        return features.new_zeros(0, out_channels, pooled_size, pooled_size)
    sat = summed_area_table(features).reshape(-1)
    plane = (h + 1) * (w + 1)
    hs, he, ws, we = ps_bin_bounds(rois, pooled_size, spatial_scale, h, w, convention,
                                   coord_dtype)
    chan = ps_channel_index(out_channels, group_size, pooled_size, features.device) * plane
    outs = []
    for start in range(0, num, ROIS_PER_CHUNK):  # chunks bound memory; all RoIs of a chunk at once
        sl = slice(start, start + ROIS_PER_CHUNK)
        base = (rois[sl, 0].long() * (c * plane))[:, None, None, None, None] + chan[None, :, None]
        ys = torch.stack([he[sl], hs[sl], he[sl], hs[sl]], 1) * (w + 1)  # (n, 4, P) corners
        xs = torch.stack([we[sl], we[sl], ws[sl], ws[sl]], 1)
        corners = sat.take(base + (ys[:, None, :, :, None] + xs[:, None, :, None, :]))
        total = corners[:, :, 0] - corners[:, :, 1] - corners[:, :, 2] + corners[:, :, 3]
        area = ((he[sl] - hs[sl])[:, None, :, None] * (we[sl] - ws[sl])[:, None, None, :])
        outs.append(torch.where(area > 0, total / area.clamp(min=1).to(total.dtype),
                                torch.zeros_like(total)))
    return torch.cat(outs).to(features.dtype)
