"""Mask-IoU regression: targets and loss (YOLACT++ fast mask re-scoring, Mask Scoring R-CNN,
CenterMask's MaskIoU head).

Shapes: N instances, H x W mask resolution (predicted and GT masks already at the same size,
e.g. both cropped/resized to the RoI or both at image resolution).

A mask-IoU head regresses, for each predicted mask, the IoU between the *binarised* predicted
mask and its matched ground-truth mask; at test time the predicted IoU multiplies the
classification score. The target is a constant (no gradient flows into the mask branch).
"""
import torch
from torch import Tensor

__all__ = ['mask_iou_targets', 'mask_iou_loss']


def _check_same_shape(pred_masks: Tensor, gt_masks: Tensor) -> None:
    if pred_masks.dim() != 3:
        raise ValueError(f'pred_masks must have shape (N, H, W), got {tuple(pred_masks.shape)}')
    if pred_masks.shape != gt_masks.shape:
        raise ValueError(f'gt_masks must have the shape of pred_masks {tuple(pred_masks.shape)}, '
                         f'got {tuple(gt_masks.shape)}: resize/crop both to the same grid first')


@torch.no_grad()
def mask_iou_targets(pred_masks: Tensor, gt_masks: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of each binarised predicted mask with its own GT mask, batched.

    Args:
        pred_masks: (N, H, W) float mask probabilities (or bool). Binarised as
            ``pred_masks > threshold``; pass logits with ``threshold=0.0``.
        gt_masks: (N, H, W) bool or float {0, 1} (values > 0.5 count as foreground).
        threshold: binarisation threshold for ``pred_masks``.

    Returns:
        (N,) float IoU in [0, 1], detached, dtype float32 (or pred_masks' float dtype).
        A pair whose union is empty (both masks empty) gets IoU 0.
    """
    _check_same_shape(pred_masks, gt_masks)
    dtype = pred_masks.dtype if pred_masks.is_floating_point() else torch.float32
    pred = (pred_masks > threshold).to(dtype) if pred_masks.dtype != torch.bool \
        else pred_masks.to(dtype)
    gt = gt_masks.to(dtype) if gt_masks.dtype == torch.bool else (gt_masks > 0.5).to(dtype)
    inter = (pred * gt).flatten(1).sum(1)
    union = pred.flatten(1).sum(1) + gt.flatten(1).sum(1) - inter
    return inter / union.clamp(min=1.0)


def mask_iou_loss(pred_iou: Tensor, target_iou: Tensor, weight: float = 1.0,
                  loss_type: str = 'l2', reduction: str = 'mean') -> Tensor:
    """Regression loss of predicted mask IoUs.

    Args:
        pred_iou: (N,) predicted IoU of each instance (already gathered at its GT class).
        target_iou: (N,) targets from :func:`mask_iou_targets` (no gradient).
        weight: scalar loss weight (YOLACT++: 25; Mask Scoring R-CNN / CenterMask: 1).
        loss_type: ``'l2'`` (squared error, Mask Scoring R-CNN / CenterMask) or
            ``'smooth_l1'`` (beta 1, as YOLACT++'s released code).
        reduction: ``'mean'`` over the N instances or ``'sum'`` (YOLACT++'s released code sums,
            then divides by the batch's number of positive anchors, not by N).

    Returns:
        scalar loss; 0 (still connected to ``pred_iou``'s graph) when N == 0.
    """
    if pred_iou.shape != target_iou.shape or pred_iou.dim() != 1:
        raise ValueError(f'pred_iou and target_iou must both have shape (N,), got '
                         f'{tuple(pred_iou.shape)} and {tuple(target_iou.shape)}')
    if reduction not in ('mean', 'sum'):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if pred_iou.numel() == 0:
        return pred_iou.sum() * 0.0
    diff = pred_iou - target_iou.detach().to(pred_iou.dtype)
    if loss_type == 'l2':
        per_item = diff.pow(2)
    elif loss_type == 'smooth_l1':
        ad = diff.abs()
        per_item = torch.where(ad < 1.0, 0.5 * ad.pow(2), ad - 0.5)
    else:
        raise ValueError(f"loss_type must be 'l2' or 'smooth_l1', got {loss_type!r}")
    loss = per_item.mean() if reduction == 'mean' else per_item.sum()
    return loss * weight
