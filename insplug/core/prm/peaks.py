"""Class peak finding and peak stimulation (PRM, Zhou et al. CVPR 2018; also used by CountSeg).

Shapes: B images, K classes, a class response map (CRM) per class of size h x w; P peaks.

A pixel is a peak of its class map when it is the maximum of the ``win_size`` x ``win_size``
window centred on it (pixels outside the map count as -inf). Ties follow the release, which
compares ``max_pool2d``'s argmax with the pixel's own index: among equal maxima of a window the
first in raster order wins, so of two equal neighbours only the first can be a peak. A peak must
also reach the map's filter value (the release's default: the median of the map).

Peak stimulation aggregates each class map by the mean of its peaks (the classification score).
The release's backward passes ``grad`` to every peak WITHOUT the 1/(number of peaks) of the mean
(``PeakStimulation.backward``: ``peak_map * grad_output``); that is the default here,
``exact_grad=True`` gives the true gradient of the mean.
"""
import torch
import torch.nn.functional as F


def local_peak_map(crm, win_size=3):
    """Window maxima of each map (the release's rule, see the module docstring).

    Args:
        crm: (B, K, h, w) float.
        win_size: odd int >= 1.

    Returns:
        (B, K, h, w) bool.
    """
    if win_size % 2 != 1:
        raise ValueError(f'win_size must be odd, got {win_size}')
    off = (win_size - 1) // 2
    b, k, h, w = crm.shape
    if off == 0:
        return torch.ones_like(crm, dtype=torch.bool)
    padded = F.pad(crm, (off, off, off, off), value=float('-inf'))
    _, idx = F.max_pool2d(padded, win_size, stride=1, return_indices=True)
    hp, wp = h + 2 * off, w + 2 * off
    own = torch.arange(hp * wp, device=crm.device).view(hp, wp)[off:off + h, off:off + w]
    return idx == own


def peak_filter_value(crm, filter_type='median'):
    """Per-map threshold a peak must reach (``input >= value``).

    Args:
        crm: (B, K, h, w).
        filter_type: 'median' (torch's lower median), 'mean', 'max', a number, or None.

    Returns:
        (B, K, 1, 1) tensor, or None (no filtering).
    """
    if filter_type is None:
        return None
    flat = crm.flatten(2)
    if filter_type == 'median':
        value = flat.median(dim=2).values
    elif filter_type == 'mean':
        value = flat.mean(dim=2)
    elif filter_type == 'max':
        value = flat.max(dim=2).values
    elif isinstance(filter_type, (int, float)):
        return crm.new_full(crm.shape[:2] + (1, 1), float(filter_type))
    else:
        raise ValueError(f'unknown peak filter {filter_type!r}')
    return value[..., None, None]


def find_peaks(crm, win_size=3, filter_type='median'):
    """Peaks of every class map: window maxima that reach the filter value.

    Args:
        crm: (B, K, h, w).

    Returns:
        peak_map (B, K, h, w) bool; peak_list (P, 4) int64 rows (b, k, y, x) in raster order.
    """
    with torch.no_grad():
        peak_map = local_peak_map(crm, win_size)
        value = peak_filter_value(crm, filter_type)
        if value is not None:
            peak_map = peak_map & (crm >= value)
    return peak_map, torch.nonzero(peak_map)


class _PeakMean(torch.autograd.Function):
    """Mean of the peak values of each map; backward with or without the 1/count."""

    @staticmethod
    def forward(ctx, crm, peak_map, exact_grad):
        pm = peak_map.to(crm.dtype)
        count = pm.flatten(2).sum(2)
        ctx.save_for_backward(pm, count)
        ctx.exact_grad = exact_grad
        return (crm * pm).flatten(2).sum(2) / count

    @staticmethod
    def backward(ctx, grad):
        pm, count = ctx.saved_tensors
        if ctx.exact_grad:
            grad = grad / count
        return pm * grad[..., None, None], None, None


def peak_stimulation(crm, win_size=3, filter_type='median', exact_grad=False):
    """Class scores as the mean of each map's peaks (the release's ``peak_stimulation``).

    Args:
        crm: (B, K, h, w).
        exact_grad: False (release): the backward omits the mean's 1/count.

    Returns:
        scores (B, K); peak_map (B, K, h, w) bool; peak_list (P, 4) (b, k, y, x).
    """
    peak_map, peak_list = find_peaks(crm, win_size, filter_type)
    return _PeakMean.apply(crm, peak_map, exact_grad), peak_map, peak_list


def peak_values(crm, peak_list):
    """Values of the listed peaks.

    Args:
        crm: (B, K, h, w); peak_list: (P, 4) (b, k, y, x).

    Returns:
        (P,) tensor.
    """
    b, k, y, x = peak_list.unbind(1)
    return crm[b, k, y, x]
