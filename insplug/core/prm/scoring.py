"""Instance masks from peak response maps by proposal retrieval (PRM; CountSeg adds a density
term).

Shapes: N peaks kept for inference, P class-agnostic proposals, all at the network input size
H x W (the release resizes proposals to the peak-response-map size); a density map of size h x w.

For a peak of class k with peak response map R, the release scores each proposal S
(``instance_seg``, a proposal is skipped when its area is outside the size limits)::

    balance * sum_S R + sum_contour(S) R - penalty * |S & background_k|     (PRM)
    ... - density_factor * |1 - sum_{S at h x w} D_k / (h w)|              (CountSeg)

(the release's CountSeg divides by 196, which is h*w at its 448 px input; ``density_norm``).

``contour(S)`` is the morphological gradient (dilation minus erosion) of S with a
``contour_width`` square; ``background_k`` are the pixels where the class-k response map,
resized to H x W, is below ``bg_factor`` times its mean. The best proposal (first one on ties)
becomes the peak's mask and its score the detection score; class-agnostic greedy mask NMS
(IoU >= 0.3 suppressed) then removes repeats.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def morphological_gradient(masks, width=5):
    """Dilation minus erosion with a ``width`` x ``width`` square (OpenCV's MORPH_GRADIENT,
    borders neutral).

    Args:
        masks: (P, H, W) bool; width: odd int.

    Returns:
        (P, H, W) bool.
    """
    pad = width // 2
    m = masks.float()[:, None]
    dil = F.max_pool2d(F.pad(m, (pad,) * 4, value=0.), width, stride=1)
    ero = -F.max_pool2d(F.pad(-m, (pad,) * 4, value=-1.), width, stride=1)
    return (dil - ero)[:, 0] > 0


def release_resize(maps, size, resample='bicubic'):
    """The release's ``scipy.misc.imresize``: each map byte-scaled to uint8 over its own
    [min, max], resized with PIL, returned as float.

    Args:
        maps: (N, h, w) float; size: (H, W); resample: 'bicubic' or 'nearest'.

    Returns:
        (N, H, W) float in [0, 255].
    """
    mode = Image.BICUBIC if resample == 'bicubic' else Image.NEAREST
    out = []
    for m in maps.detach().cpu().numpy():  # the map's own dtype, as scipy
        lo, hi = m.min(), m.max()
        scale = 255.0 / float((hi - lo) if hi != lo else 1.0)
        byte = ((m - lo) * scale + 0).clip(0, 255) + 0.5
        img = Image.fromarray(byte.astype(np.uint8)).resize((size[1], size[0]), resample=mode)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float64)))
    if not out:
        return maps.new_zeros((0,) + tuple(size), dtype=torch.float64)
    return torch.stack(out).to(maps.device)


def background_maps(class_maps_up, bg_factor):
    """Background of each class map: pixels below ``bg_factor`` x the map's mean.

    Args:
        class_maps_up: (N, H, W) class response maps resized to the input size.

    Returns:
        (N, H, W) float {0, 1}.
    """
    mean = class_maps_up.flatten(1).mean(1)[:, None, None]
    return (class_maps_up < bg_factor * mean).to(class_maps_up.dtype)


def proposal_scores(prms, proposals, background, balance=0.8, penalty=1e-5, contour_width=5,
                    size_limits=(0.00002, 0.85), density=None, density_factor=0.0,
                    density_proposals=None, density_norm=None):
    """Score of every proposal for every peak (the formula of the module docstring).

    Args:
        prms: (N, H, W) peak response maps.
        proposals: (P, H, W) bool.
        background: (N, H, W) {0, 1} background of each peak's class.
        balance, penalty: the release's ``balance_factor`` and ``penalty_factor``.
        size_limits: (lo, hi) fractions of H*W; proposals with area < lo*HW or >= hi*HW score
            -inf.
        density: (N, h, w) density map of each peak's class (CountSeg) or None.
        density_proposals: (P, h, w) bool proposals resized to the density size.
        density_norm: divisor of the density (None: h*w, which turns the mean-count density
            into one summing to the count; the release hard-codes 196 = 14 x 14, h*w at its
            448 px input).

    Returns:
        (N, P) float64 scores (-inf: skipped proposal).
    """
    n, h, w = prms.shape
    p = proposals.shape[0]
    if n == 0 or p == 0:
        return prms.new_zeros((n, p), dtype=torch.float64)
    masks = proposals.flatten(1).double()
    contours = morphological_gradient(proposals, contour_width).flatten(1).double()
    r = prms.flatten(1).double()
    scores = (balance * r @ masks.T + r @ contours.T
              - penalty * background.flatten(1).double() @ masks.T)
    if density is not None and density_factor:
        dh, dw = density.shape[-2:]
        dens = density.flatten(1).double() / (density_norm or dh * dw)
        inside = dens @ density_proposals.flatten(1).double().T
        scores = scores - density_factor * (1 - inside).abs()
    area = masks.sum(1)
    bad = (area >= size_limits[1] * h * w) | (area < size_limits[0] * h * w)
    return scores.masked_fill(bad[None], float('-inf'))


def select_proposals(scores):
    """Best proposal of each peak (the first on ties, as the release's strict ``>``).

    Args:
        scores: (N, P) with -inf for skipped proposals.

    Returns:
        best (N,) int64 index; best_score (N,); found (N,) bool (some proposal was valid).
    """
    if scores.shape[1] == 0:
        zeros = scores.new_zeros(scores.shape[0])
        return zeros.long(), zeros, zeros.bool()
    best_score, best = scores.max(1)
    first = (scores == best_score[:, None]).double().argmax(1)
    return first, best_score, torch.isfinite(best_score)
