"""D2Det discriminative RoI pooling (Cao et al., CVPR 2020), as released (mmdet 1.1).

Shapes: R RoIs ``(batch_index, x1, y1, x2, y2)`` in image pixels; a B x C x H x W feature map;
S x S output bins; P x P offset parts; k x k samples per bin.

The release's ``DeformRoIPoolingPack`` (``mmdet/ops/dcn/deform_pool.py``) runs, per RoI:

1. a coarse 3 x 3 deformable-PS RoI pooling without offsets;
2. a light offset predictor: ``offset_fc`` (Linear 9C -> F, ReLU, Linear F -> F, ReLU,
   Linear F -> 2 * 7 * 7, the last one zero-initialised) -> (R, 2, 7, 7), nearest-upsampled x2;
3. a 14 x 14 deformable pooling with those offsets (one offset per output bin, scaled by
   ``trans_std`` and the RoI's size);
4. adaptive-weighted pooling (``AWPool``): per-position weights
   ``exp(12 * sigmoid(InstanceNorm(conv3x3(x))))`` and a weighted 3 x 3 / stride 2 average,
   14 x 14 -> 7 x 7.

:func:`deform_psroi_pool` is a pure-PyTorch (CPU/GPU, autograd) form of the release's CUDA kernel
``DeformablePSROIPoolForwardKernel`` with ``group_size=1`` (the only value D2Det uses): RoI
corners are rounded half away from zero, ``x1 * s - 0.5 .. (x2 + 1) * s - 0.5``, each bin is
sampled at ``k x k`` points starting at the bin's corner (no half-cell shift), points outside
``[-0.5, W - 0.5]`` are skipped, the others clamped into the map and read bilinearly, and the bin is
the mean of the read points (0 when none).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

# the release's SoftGate: weight logits are 12 * sigmoid(.)
AWP_GATE = 12.0


def _round_half_away(x):
    """C ``round``: halves away from zero (``torch.round`` rounds halves to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def deform_psroi_pool(feat, rois, offset, spatial_scale, out_size, part_size=None,
                      sample_per_part=1, trans_std=0.0):
    """Deformable (PS, group 1) RoI pooling of the D2Det release.

    Args:
        feat: (B, C, H, W).
        rois: (R, 5) batch index, x1, y1, x2, y2 in image pixels.
        offset: (R, 2, P, P) normalised (x, y) offsets of each part, or None (no offsets).
        spatial_scale: float, 1 / stride of ``feat``.
        out_size: int S, output bins per side.
        part_size: int P (default S): bin (i, j) reads part ``floor(i / S * P)``.
        sample_per_part: int k, samples per bin side.
        trans_std: float, offsets are multiplied by it (and by the RoI side).

    Returns:
        (R, C, S, S) pooled features (dtype of ``feat``).
    """
    num_rois = rois.shape[0]
    batch, channels, height, width = feat.shape
    size = int(out_size)
    part = size if part_size is None else int(part_size)
    k = int(sample_per_part)
    if num_rois == 0:
        return feat.new_zeros(0, channels, size, size)
    dtype = feat.dtype
    rois = rois.to(dtype)
    x_start = _round_half_away(rois[:, 1]) * spatial_scale - 0.5
    y_start = _round_half_away(rois[:, 2]) * spatial_scale - 0.5
    x_end = (_round_half_away(rois[:, 3]) + 1.0) * spatial_scale - 0.5
    y_end = (_round_half_away(rois[:, 4]) + 1.0) * spatial_scale - 0.5
    roi_w = (x_end - x_start).clamp(min=0.1)
    roi_h = (y_end - y_start).clamp(min=0.1)
    bin_w = roi_w / size
    bin_h = roi_h / size
    grid = torch.arange(size, dtype=dtype, device=feat.device)
    # bin corners: (R, S) along x (pw) and y (ph)
    w0 = grid[None] * bin_w[:, None] + x_start[:, None]
    h0 = grid[None] * bin_h[:, None] + y_start[:, None]
    w0 = w0[:, None, :].expand(num_rois, size, size)  # (R, ph, pw)
    h0 = h0[:, :, None].expand(num_rois, size, size)
    if offset is not None:
        parts = torch.floor(grid / size * part).long()
        off = offset.to(dtype)[:, :, parts][:, :, :, parts] * trans_std  # (R, 2, S, S)
        w0 = w0 + off[:, 0] * roi_w[:, None, None]
        h0 = h0 + off[:, 1] * roi_h[:, None, None]
    sub = torch.arange(k, dtype=dtype, device=feat.device)
    # sample points: (R, S, S, k, k) with (ih, iw) order
    ws = w0[..., None, None] + sub[None, None, None, None, :] * (bin_w / k)[:, None, None, None,
                                                                              None]
    hs = h0[..., None, None] + sub[None, None, None, :, None] * (bin_h / k)[:, None, None, None,
                                                                              None]
    ws, hs = torch.broadcast_tensors(ws, hs)
    valid = (ws >= -0.5) & (ws <= width - 0.5) & (hs >= -0.5) & (hs <= height - 0.5)
    ws = ws.clamp(0.0, width - 1.0)
    hs = hs.clamp(0.0, height - 1.0)
    # bilinear reads of the clamped points: grid_sample with align_corners=True maps -1..1 onto
    # pixel centres 0..W-1, so it reads exactly the kernel's four neighbours and weights
    gx = ws / max(width - 1, 1) * 2 - 1
    gy = hs / max(height - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(num_rois, size * size, k * k, 2)
    vmask = valid.to(dtype).reshape(num_rois, size * size, k * k)
    batch_idx = rois[:, 0].long()
    out = feat.new_zeros(num_rois, channels, size * size)
    for b in range(batch):  # one grid_sample per image
        sel = (batch_idx == b).nonzero(as_tuple=False).squeeze(1)
        if sel.numel() == 0:
            continue
        g = grid[sel].reshape(1, -1, k * k, 2)
        vals = F.grid_sample(feat[b:b + 1], g, mode='bilinear', padding_mode='zeros',
                             align_corners=True)  # (1, C, Rb S S, k k)
        vals = vals.reshape(channels, sel.numel(), size * size, k * k) * vmask[sel][None]
        out = out.index_copy(0, sel, vals.sum(-1).permute(1, 0, 2))
    count = vmask.sum(-1)  # (R, S S)
    out = torch.where(count[:, None] > 0, out / count.clamp(min=1)[:, None], torch.zeros_like(out))
    return out.reshape(num_rois, channels, size, size)


def roi_levels(rois, num_levels, finest_scale=56, plus_one=True):
    """FPN level of each RoI, mmdet's ``floor(log2(scale / finest_scale + 1e-6))``.

    Args:
        rois: (R, 5). num_levels: L. finest_scale: 56 (scale of level 0).
        plus_one: mmdet 1.x's ``scale = sqrt((x2 - x1 + 1) (y2 - y1 + 1))`` (the release);
            False: mmdet 3.x's ``sqrt((x2 - x1) (y2 - y1))``.

    Returns:
        (R,) long in [0, L).
    """
    extra = 1.0 if plus_one else 0.0
    scale = torch.sqrt((rois[:, 3] - rois[:, 1] + extra) * (rois[:, 4] - rois[:, 2] + extra))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def pool_levels(layers, feats, rois, levels, out_channels, out_size):
    """Run ``layers[l](feats[l], rois of level l)`` for every level into one (R, C, S, S).

    Args:
        layers: L callables ``(feat, rois) -> (r, C, S, S)``. feats: L (B, C, H_l, W_l).
        rois: (R, 5). levels: (R,) from :func:`roi_levels`. out_size: (S, S).
    """
    out = feats[0].new_zeros(rois.shape[0], out_channels, *out_size)
    for lvl, (layer, feat) in enumerate(zip(layers, feats)):  # one call per level
        inds = (levels == lvl).nonzero(as_tuple=False).squeeze(1)
        if inds.numel() > 0:
            out = out.index_copy(0, inds, layer(feat, rois[inds]).to(out.dtype))
        else:  # keep every level (and its layer's parameters) in the graph
            extra = sum(p.view(-1)[0] for p in getattr(layer, 'parameters', lambda: [])())
            out = out + feat.sum() * 0. + extra * 0.
    return out


def adaptive_weighted_pool(x, weight_logits, kernel=3, stride=2, padding=1):
    """The release's ``AWPool`` average: ``avg(x * e^l) / avg(e^l)`` over kernel windows.

    Args:
        x: (R, C, S, S) features. weight_logits: (R, C, S, S) logits l.

    Returns:
        (R, C, S', S') with S' = (S + 2 padding - kernel) // stride + 1.
    """
    weight = weight_logits.exp()
    return (F.avg_pool2d(x * weight, kernel, stride, padding)
            / F.avg_pool2d(weight, kernel, stride, padding))


class DiscriminativeRoIPool(nn.Module):
    """One pyramid level's discriminative RoI pooling (the release's ``DeformRoIPoolingPack``).

    Args:
        spatial_scale: 1 / stride of the level.
        out_size: S of the output (official 7); offsets are predicted at S x S and the
            deformable pooling runs at 2S x 2S before the adaptive-weighted pooling.
        out_channels: C of the features.
        sample_per_part: k (official mmdet 1.1 config 1; the mmdet 2.1 port's config 2).
        trans_std: offset scale (official 0.1).
        coarse_size: side of the offset predictor's coarse pooling (release 3).
        num_offset_fcs: layers of ``offset_fc`` (release 3).
        deform_fc_channels: hidden width of ``offset_fc`` (release 1024).
    """

    def __init__(self, spatial_scale, out_size=7, out_channels=256, sample_per_part=1,
                 trans_std=0.1, coarse_size=3, num_offset_fcs=3, deform_fc_channels=1024):
        super().__init__()
        self.spatial_scale = float(spatial_scale)
        self.out_size = int(out_size)
        self.out_channels = out_channels
        self.sample_per_part = sample_per_part
        self.trans_std = trans_std
        self.coarse_size = coarse_size
        layers = []
        in_dim = coarse_size * coarse_size * out_channels
        for i in range(num_offset_fcs):
            last = i == num_offset_fcs - 1
            out_dim = self.out_size * self.out_size * 2 if last else deform_fc_channels
            layers.append(nn.Linear(in_dim, out_dim))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            in_dim = out_dim
        self.offset_fc = nn.Sequential(*layers)
        nn.init.zeros_(self.offset_fc[-1].weight)
        nn.init.zeros_(self.offset_fc[-1].bias)
        # AWPool's weight branch: conv (no bias, zero-initialised) -> InstanceNorm (affine)
        self.weight_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        nn.init.zeros_(self.weight_conv.weight)
        self.weight_norm = nn.InstanceNorm2d(out_channels, affine=True)

    @property
    def output_size(self):
        """(S, S), the attribute mmdet's RoI extractors read."""
        return (self.out_size, self.out_size)

    def forward(self, feat, rois):
        """feat: (B, C, H, W); rois: (R, 5) -> (R, C, S, S)."""
        if feat.shape[1] != self.out_channels:
            raise ValueError(f'DiscriminativeRoIPool expects {self.out_channels} channels, '
                             f'got {feat.shape[1]}')
        num_rois = rois.shape[0]
        size = self.out_size
        if num_rois == 0:
            return feat.new_zeros(0, self.out_channels, size, size)
        coarse = deform_psroi_pool(feat, rois, None, self.spatial_scale, self.coarse_size,
                                   self.coarse_size, self.sample_per_part)
        offset = self.offset_fc(coarse.reshape(num_rois, -1)).view(num_rois, 2, size, size)
        offset = F.interpolate(offset, scale_factor=2, mode='nearest')
        fine = deform_psroi_pool(feat, rois, offset, self.spatial_scale, 2 * size, 2 * size,
                                 self.sample_per_part, self.trans_std)
        logits = torch.sigmoid(self.weight_norm(self.weight_conv(fine))) * AWP_GATE
        return adaptive_weighted_pool(fine, logits)
