"""Dense multi-scale DeepMask / SharpMask inference (``InferDeepMask.lua``,
``InferSharpMask.lua``, ``evalPerImage.lua``) -> class-agnostic mask proposals.

Shapes: one image of H x W; P scales; score map of scale p: h_p x w_p; K proposals; O the mask
side (56, or iSz for SharpMask).

Release procedure, per image:

1. scales ``2^e`` for e = smin, smin + sstep, ..., smax (-2.5 .. 0.5 step 0.5: 7 scales); each
   scale resizes the image bilinearly with aligned corners to ``round(s H) x round(s W)``
   (``nn.SpatialReSamplingEx``), pads it by ``iSz / 2`` px of 0.5 grey, normalises;
2. the trunk and heads run densely (stride 16); window (r, c) has its labelled iSz-px region at
   ``(16 r - iSz / 2, 16 c - iSz / 2) / s`` in the image, side ``iSz / s``;
3. the ``np`` best windows over all scales by sigmoid score (a merge of per-scale sorted lists =
   one sort); no NMS;
4. each window's mask logits are resized to ``floor(iSz / s)`` px with Torch's ``image.scale``
   (separable; aligned-corners linear when enlarging, fractional box average when shrinking),
   thresholded at ``logit(thr)`` (thr 0.2) and placed at
   ``floor(16 r / s - iSz / (2 s))``.

The release converts a sorted 1-based index ``i`` to ``x = floor(i / w)``, ``y = i % w + 1``:
an off-by-one that takes the mask (and its placement) from the window one row up and one column
right of the scored one (``max(1, .)`` clamps the top row). Fixed here; ``release_index=True``
reproduces it (docs/deviations/deepmask.md).
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes


def pyramid_scales(smin: float = -2.5, smax: float = 0.5, sstep: float = 0.5) -> List[float]:
    """``2^e`` for e = smin, smin + sstep, ... <= smax (Lua's inclusive numeric for)."""
    n = int(math.floor((smax - smin) / sstep + 1e-9)) + 1
    return [2.0 ** (smin + i * sstep) for i in range(n)]


def scaled_padded_image(image: Tensor, scale: float, border: int, pad_value: Tensor) -> Tensor:
    """Resize and pad one normalised image.

    Args:
        image: (C, H, W), normalised. scale: s. border: iSz / 2. pad_value: (C,), normalised
            0.5 grey.

    Returns:
        (1, C, round(s H) + 2 border, round(s W) + 2 border).
    """
    h, w = image.shape[-2:]
    size = (int(math.floor(h * scale + 0.5)), int(math.floor(w * scale + 0.5)))
    x = F.interpolate(image[None], size, mode='bilinear', align_corners=True)
    out = pad_value.view(1, -1, 1, 1).to(x).expand(1, x.shape[1], size[0] + 2 * border,
                                                   size[1] + 2 * border).clone()
    out[..., border:border + size[0], border:border + size[1]] = x
    return out


def select_top_windows(score_maps: Sequence[Tensor], num: int, release_index: bool = False
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``num`` best windows over all scales.

    Args:
        score_maps: P tensors (h_p, w_p) of score logits.
        num: np.
        release_index: reproduce the release's index conversion (see the module docstring).

    Returns:
        scores (K,) sigmoid probabilities (of the scored window), scale (K,) long, row (K,),
        col (K,) long: the window whose mask is taken and placed. K = min(num, sum h_p w_p).
    """
    flat = torch.cat([s.flatten() for s in score_maps])
    which = torch.cat([torch.full((s.numel(),), p, dtype=torch.long, device=flat.device)
                       for p, s in enumerate(score_maps)])
    offsets = torch.tensor([0] + [s.numel() for s in score_maps], device=flat.device).cumsum(0)
    order = torch.sort(flat, descending=True, stable=True).indices[:num]
    scale = which[order]
    idx = order - offsets[scale]
    widths = torch.tensor([s.shape[1] for s in score_maps], device=flat.device)[scale]
    heights = torch.tensor([s.shape[0] for s in score_maps], device=flat.device)[scale]
    if release_index:
        one_based = idx + 1
        row = (one_based // widths).clamp(min=1) - 1
        col = one_based % widths  # (i % w + 1) - 1
        row = torch.minimum(row, heights - 1)
    else:
        row, col = idx // widths, idx % widths
    return torch.sigmoid(flat[order]), scale, row, col


def torch_image_scale_matrix(src: int, dst: int, dtype=torch.float32, device=None) -> Tensor:
    """Torch7 ``image.scale(..., 'bilinear')`` along one axis as a (dst, src) matrix.

    Enlarging: ``x_d = x_s[d (src-1)/(dst-1)]`` linearly interpolated (last = last); shrinking:
    box average over ``[d src/dst, (d+1) src/dst)`` with fractional end weights; equal: copy.
    """
    m = torch.zeros(dst, src, dtype=torch.float64)
    if dst > src:
        if src == 1:
            m[:, 0] = 1
        else:
            pos = torch.arange(dst - 1, dtype=torch.float64) * ((src - 1) / (dst - 1))
            i0 = pos.floor().long()
            frac = pos - i0
            r = torch.arange(dst - 1)
            m[r, i0] += 1 - frac
            m[r, (i0 + 1).clamp(max=src - 1)] += frac
            m[dst - 1, src - 1] = 1
    elif dst < src:
        scale = src / dst
        s0_i, s0_f = 0, 0.0
        for d in range(dst):
            s1 = (d + 1) * scale
            s1_i = int(s1)
            s1_f = s1 - s1_i
            row = torch.zeros(src, dtype=torch.float64)
            row[s0_i] += 1 - s0_f
            row[s0_i + 1:s1_i] += 1
            if s1_i < src:
                row[s1_i] += s1_f
            m[d] = row / row.sum()
            s0_i, s0_f = s1_i, s1_f
    else:
        m = torch.eye(src, dtype=torch.float64)
    return m.to(dtype=dtype, device=device)


def paste_window_masks(logits: Tensor, scales: Tensor, rows: Tensor, cols: Tensor,
                       window_size: int, stride: int, height: int, width: int,
                       threshold: float = 0.2) -> Tensor:
    """Binary image masks of the selected windows (``getTopMasks``), vectorised per distinct
    window size (at most one group per pyramid scale).

    Args:
        logits: (K, O, O) mask logits. scales: (K,) float, the pyramid scale s of each.
        rows, cols: (K,) long window positions on their score map.
        window_size: iSz. stride: 16. height, width: image size.
        threshold: probability threshold (0.2), compared as a logit.

    Returns:
        (K, H, W) bool.
    """
    num = logits.shape[0]
    thr = math.log(threshold / (1 - threshold))
    out = torch.zeros(num, height, width, dtype=torch.bool, device=logits.device)
    sizes = torch.floor(window_size / scales).long()
    for size in torch.unique(sizes).tolist():
        sel = torch.nonzero(sizes == size)[:, 0]
        m = torch_image_scale_matrix(logits.shape[-1], size, logits.dtype, logits.device)
        big = torch.einsum('ij,kjl,ml->kim', m, logits[sel], m) > thr  # (k, size, size)
        s = scales[sel]
        top = torch.floor(rows[sel].to(s) * stride / s - window_size / 2 / s).long()
        left = torch.floor(cols[sel].to(s) * stride / s - window_size / 2 / s).long()
        ii = top[:, None] + torch.arange(size, device=logits.device)  # (k, size)
        jj = left[:, None] + torch.arange(size, device=logits.device)
        inside = ((ii >= 0) & (ii < height))[:, :, None] & ((jj >= 0) & (jj < width))[:, None]
        k = torch.arange(sel.numel(), device=logits.device)[:, None, None].expand_as(big)
        keep = big & inside
        canvas = torch.zeros(sel.numel(), height, width, dtype=torch.bool, device=logits.device)
        canvas[k[keep], ii[:, :, None].expand_as(big)[keep], jj[:, None, :].expand_as(big)[keep]] \
            = True
        out[sel] = canvas
    return out


def gather_windows(maps: Tensor, rows: Tensor, cols: Tensor, size: int, step: int) -> Tensor:
    """Crop ``size`` x ``size`` patches at ``(rows step, cols step)``, zeros beyond the map
    (``getTopPatches``).

    Args:
        maps: (C, h, w). rows, cols: (K,) long. size, step: int.

    Returns:
        (K, C, size, size).
    """
    c, h, w = maps.shape
    padded = F.pad(maps, (0, size, 0, size))
    ii = rows[:, None] * step + torch.arange(size, device=maps.device)  # (K, size)
    jj = cols[:, None] * step + torch.arange(size, device=maps.device)
    return padded[:, ii[:, :, None], jj[:, None, :]].permute(1, 0, 2, 3)


def proposals_from_masks(masks: Tensor, scores: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """masks (K, H, W) bool, scores (K,) -> (masks, scores, boxes (K, 4) x1 y1 x2 y2)."""
    return masks, scores, masks_to_boxes(masks)
