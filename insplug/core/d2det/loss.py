"""D2Det losses and mask-IoU targets (release form, ``mmdet/models/detectors/D2Det.py``).

Shapes: N sampled positive RoIs; S x S regression cells; K classes; M x M instance masks;
G ground-truth instances of an image of H x W.

Weights of the release (hard-coded in ``D2Det.__init__``): dense regression IoU loss 2.0, overlap
BCE 1.0, instance mask BCE 1.0 (instance variant), mask-IoU MSE 0.5 (instance variant); the box
head's classification CE 2.0 comes from the config.

The dense regression loss is mmdet 1.1's ``IoULoss`` with D2Det's floor (IoU <= 0.1 is replaced by
``0.1 + IoU``) on the ``+1`` box convention of mmdet 1.x, weighted per cell by the overlap map.
The release passes the weight as an (N S S, 1) column to a loss of shape (N S S,), so the product
broadcasts to (N S S, N S S) and its mean is ``mean(loss) * mean(weight)``: every cell is
regressed, scaled by the fraction of overlap cells. That is a broadcasting bug; the default here
is the intended per-cell weighting ``mean(loss * weight)``, and ``release_broadcast=True``
reproduces the release (see docs/deviations/d2det.md). mmdet 1.1's ``MSELoss`` has the same
fault (the mask-IoU loss is ``mean(mse) * mean(weight)``); the same flag reproduces it.
"""
import torch
import torch.nn.functional as F

IOU_FLOOR = 0.1
MASK_IOU_EPS = 1e-7


def aligned_iou(pred, target, offset=1.0, eps=1e-6):
    """IoU of aligned boxes with mmdet 1.x's ``+offset`` width convention, clamped at ``eps``.

    Args:
        pred, target: (P, 4) x1, y1, x2, y2.

    Returns:
        (P,) IoU.
    """
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt + offset).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area1 = (pred[:, 2] - pred[:, 0] + offset) * (pred[:, 3] - pred[:, 1] + offset)
    area2 = (target[:, 2] - target[:, 0] + offset) * (target[:, 3] - target[:, 1] + offset)
    return (overlap / (area1 + area2 - overlap)).clamp(min=eps)


def dense_iou_loss(pred_boxes, target_boxes, weight, loss_weight=2.0, offset=1.0,
                   release_broadcast=False):
    """D2Det's dense regression loss.

    Args:
        pred_boxes, target_boxes: (N, 4, S, S) decoded boxes of every cell.
        weight: (N, S, S) overlap-map weights.
        loss_weight: 2.0 in the release.
        offset: box width convention (1.0: mmdet 1.x ``x2 - x1 + 1``; 0.0: mmdet 3.x).
        release_broadcast: reproduce the release's broadcast mean ``mean(l) * mean(w)``.

    Returns:
        scalar loss (0 with a graph to ``pred_boxes`` when no weight is positive).
    """
    pred = pred_boxes.permute(0, 2, 3, 1).reshape(-1, 4)
    target = target_boxes.permute(0, 2, 3, 1).reshape(-1, 4)
    w = weight.reshape(-1).to(pred.dtype)
    if not bool((w > 0).any()):
        return (pred * w[:, None]).sum()
    iou = aligned_iou(pred, target, offset)
    iou = torch.where(iou > IOU_FLOOR, iou, IOU_FLOOR + iou)
    loss = -iou.log()
    if release_broadcast:
        return loss_weight * loss.mean() * w.mean()
    return loss_weight * (loss * w).mean()


def overlap_loss(overlap_logits, overlap_targets, loss_weight=1.0):
    """BCE with logits of the overlap map, mean over all cells.

    Args:
        overlap_logits: (N, 1, S, S) or (N, S, S). overlap_targets: (N, S, S) {0, 1}.
    """
    n = overlap_targets.shape[0]
    return loss_weight * F.binary_cross_entropy_with_logits(
        overlap_logits.reshape(n, -1), overlap_targets.reshape(n, -1).to(overlap_logits.dtype))


def instance_mask_loss(mask_logits, mask_targets, labels, loss_weight=1.0):
    """mmdet 1.1's ``mask_cross_entropy``: BCE on each RoI's own-class mask, mean.

    Args:
        mask_logits: (N, K, M, M). mask_targets: (N, M, M) {0, 1}. labels: (N,) in [0, K).
    """
    n = mask_logits.shape[0]
    if n == 0:
        return mask_logits.sum() * 0
    sel = mask_logits[torch.arange(n, device=labels.device), labels]
    return loss_weight * F.binary_cross_entropy_with_logits(sel, mask_targets.to(sel.dtype))


def mask_area_ratios(boxes, gt_masks, assigned):
    """Share of each assigned GT mask inside its RoI (``D2DetHead._get_area_ratio``).

    The RoI is cut at integer pixels ``[int(y1), int(y2)] x [int(x1), int(x2)]`` (truncation,
    inclusive) as in the release.

    Args:
        boxes: (N, 4) RoIs (>= 0). gt_masks: (G, H, W) bool. assigned: (N,) long in [0, G).

    Returns:
        (N,) float32 area inside / (whole area + 1e-7).
    """
    n = boxes.shape[0]
    if n == 0:
        return boxes.new_zeros(0)
    _, height, width = gt_masks.shape
    integral = F.pad(gt_masks.to(torch.float64).cumsum(1).cumsum(2), (1, 0, 1, 0))
    b = boxes.detach().to(torch.float64).trunc().long()
    x0 = b[:, 0].clamp(0, width)
    y0 = b[:, 1].clamp(0, height)
    x1 = (b[:, 2] + 1).clamp(0, width)
    y1 = (b[:, 3] + 1).clamp(0, height)
    x1 = torch.maximum(x1, x0)
    y1 = torch.maximum(y1, y0)
    ii = integral[assigned]
    rng = torch.arange(n, device=boxes.device)
    inside = ii[rng, y1, x1] - ii[rng, y0, x1] - ii[rng, y1, x0] + ii[rng, y0, x0]
    total = ii[rng, height, width]
    return (inside / (total + 1e-7)).to(torch.float32).to(boxes.device)


def mask_iou_targets(mask_logits, mask_targets, area_ratios, threshold=0.5):
    """IoU of the predicted mask with the whole GT instance (``get_target_maskiou``).

    The release thresholds the own-class mask LOGITS at 0.5 (as mmdet's MaskIoU head does).

    Args:
        mask_logits: (N, M, M) own-class logits. mask_targets: (N, M, M) {0, 1}.
        area_ratios: (N,) from :func:`mask_area_ratios`.

    Returns:
        (N,) IoU targets (>= 0).
    """
    pred = (mask_logits > threshold).to(mask_targets.dtype)
    pred_areas = pred.sum((-1, -2))
    overlap = (pred * mask_targets).sum((-1, -2))
    full = mask_targets.sum((-1, -2)) / (area_ratios + MASK_IOU_EPS)
    iou = overlap / ((pred_areas + full - overlap).abs() + MASK_IOU_EPS)
    return iou.clamp(min=0)


def mask_iou_loss(iou_pred, iou_targets, loss_weight=0.5, low=0.1, high=1.0,
                  release_broadcast=False):
    """MSE of the predicted mask IoU, weighted by ``low < target <= high``, mean over N.

    mmdet 1.1's ``MSELoss`` wraps ``F.mse_loss`` with its default mean reduction, so the release
    computes ``mean((p - t)^2) * mean(weight)`` (``release_broadcast=True``); the default is the
    intended ``mean(w * (p - t)^2)`` (mmdet 2.x's fix).

    Args:
        iou_pred: (N,) own-class predictions. iou_targets: (N,).
    """
    weight = ((iou_targets > low) & (iou_targets <= high)).to(iou_pred.dtype)
    if release_broadcast:
        return loss_weight * F.mse_loss(iou_pred, iou_targets) * weight.mean()
    return loss_weight * (F.mse_loss(iou_pred, iou_targets, reduction='none') * weight).mean()


def mask_scores(bbox_scores, iou_pred, weight=0.3):
    """Test-time mask score of the release: ``bbox score + 0.3 * predicted mask IoU``.

    Args:
        bbox_scores: (N,). iou_pred: (N,) own-class predictions.
    """
    return bbox_scores + weight * iou_pred
