"""PRM / CountSeg inference for one image: which peaks are back-propagated, and the instances
retrieved for them.

Shapes: K classes, class maps K x h x w, P peaks, N kept peaks, Q proposals at H x W.
"""
import torch

from insplug.core.postprocess.nms import mask_nms

from .scoring import background_maps, proposal_scores, select_proposals


def select_inference_peaks(scores, values, labels, class_threshold=0.0, peak_threshold=30.0,
                           rule='prm'):
    """Peaks kept for peak back-propagation.

    ``rule='prm'`` (PRM release): class score >= class_threshold and peak value >
    peak_threshold. ``rule='countseg'`` (CountSeg release): when no class reaches
    class_threshold it drops to the lowest class score; the peak threshold drops to the highest
    value among the class-selected peaks when it is above it; kept: class selected and value >=
    the threshold.

    Args:
        scores: (K,) class scores; values: (P,) peak values; labels: (P,) peak classes.

    Returns:
        (P,) bool.
    """
    if rule == 'prm':
        return (scores[labels] >= class_threshold) & (values > peak_threshold)
    if rule != 'countseg':
        raise ValueError(f'unknown peak rule {rule!r}')
    if not bool((scores >= class_threshold).any()):
        class_threshold = scores.min()
    cls_ok = scores[labels] >= class_threshold
    if not bool(cls_ok.any()):
        return cls_ok
    thr = min(float(peak_threshold), float(values[cls_ok].max()))
    return cls_ok & (values >= thr)


def retrieve_instances(prms, labels, class_maps_up, proposals, bg_factor=0.95, penalty=1e-5,
                       balance=0.8, contour_width=5, size_limits=(0.00002, 0.85),
                       nms_thr=0.3, density=None, density_factor=0.0, density_proposals=None,
                       density_norm=None):
    """Best proposal per peak, then class-agnostic mask NMS (the releases' ``instance_seg`` /
    ``instance_seg2``; the NMS suppresses IoU > nms_thr where the release suppresses >=).

    Args:
        prms: (N, H, W) peak response maps; labels: (N,) their classes.
        class_maps_up: (N, H, W) class response map of each peak's class at H x W.
        proposals: (Q, H, W) bool.
        density: (N, h, w) density maps of the peaks' classes (CountSeg), density_proposals:
            (Q, h, w) bool.

    Returns:
        masks (M, H, W) bool; labels (M,); scores (M,) float64 (selection scores, descending).
    """
    bg = background_maps(class_maps_up, bg_factor)
    scores = proposal_scores(prms, proposals, bg, balance, penalty, contour_width, size_limits,
                             density, density_factor, density_proposals,
                             density_norm)
    best, best_score, found = select_proposals(scores)
    masks, labels, best_score = proposals[best[found]], labels[found], best_score[found]
    if masks.shape[0] == 0 or nms_thr is None:
        order = best_score.argsort(descending=True, stable=True)
        return masks[order], labels[order], best_score[order]
    order = best_score.argsort(descending=True, stable=True)
    masks, labels, best_score = masks[order], labels[order], best_score[order]
    # ranks as scores: mask_nms sorts them back into this (stable) order
    rank = torch.arange(masks.shape[0], 0, -1, dtype=torch.float64, device=masks.device)
    keep, _ = mask_nms(rank, labels, masks=masks, iou_thr=nms_thr, class_agnostic=True)
    keep = keep.sort().values
    return masks[keep], labels[keep], best_score[keep]
