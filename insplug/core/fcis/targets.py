"""FCIS RoI targets (release: ``fcis/operator_py/proposal_annotator.py`` with the COCO OHEM
config, ``BATCH_ROIS = -1``; ``lib/mask/mask_transform.py::intersect_box_mask``).

Shapes: R RoIs (R, 4) of one image (the proposals, then the G ground-truth boxes appended, as the
release does); G ground truths: boxes (G, 4), labels (G,) in [1, K) (0 = background), masks
(G, H, W) whole-image binary masks; S = mask size (21).

* Assignment: the gt of largest legacy IoU (first on ties); foreground when IoU >= 0.5,
  background when IoU in [0, 0.5); with ``batch_rois = -1`` every RoI is kept, foreground first
  (in their order), then background.
* Box targets: ``legacy_box_encode`` / stds (0.2, 0.2, 0.5, 0.5), in the foreground slot (1) of
  the class-agnostic 2-slot layout, weight 1; background RoIs get zero weight.
* Mask targets (foreground RoIs): the gt mask inside ``round(gt box)`` intersected with
  ``round(RoI)``, zero elsewhere in the RoI, resized to S x S as ``cv2.resize`` (INTER_LINEAR,
  source coordinate ``(j + 0.5) * w / S - 0.5`` computed in float32 and clamped to the RoI),
  then ``>= 0.4``; background RoIs get -1 (ignored).
"""
import torch
from torch import Tensor

from .boxes import legacy_box_encode, legacy_box_iou

BBOX_STDS = (0.2, 0.2, 0.5, 0.5)


def cv2_linear_coords(start: Tensor, length: Tensor, size: int):
    """Source pixels and weights of ``cv2.resize(INTER_LINEAR)`` from ``length`` to ``size``.

    Args:
        start: (N,) int64 first source pixel; length: (N,) int64 source length (>= 1).
        size: output length S.

    Returns:
        lo, hi: (N, S) int64 source pixels; frac: (N, S) float64 weight of ``hi``.
    """
    j = torch.arange(size, dtype=torch.float64, device=start.device)
    scale = length.double()[:, None] / size
    fx = ((j[None] + 0.5) * scale - 0.5).float().double()  # cv2 keeps the coordinate in float
    sx = torch.floor(fx)
    frac = fx - sx
    sx = sx.long()
    low = sx < 0
    frac = torch.where(low, torch.zeros_like(frac), frac)
    sx = torch.where(low, torch.zeros_like(sx), sx)
    high = sx >= (length[:, None] - 1)
    frac = torch.where(high, torch.zeros_like(frac), frac)
    sx = torch.where(high, length[:, None] - 1, sx)
    hi = torch.minimum(sx + 1, length[:, None] - 1)
    return start[:, None] + sx, start[:, None] + hi, frac


def roi_mask_targets(rois: Tensor, gt_boxes: Tensor, gt_masks: Tensor, assigned: Tensor,
                     mask_size: int = 21, binary_thresh: float = 0.4) -> Tensor:
    """Binary S x S mask target of each RoI for its assigned gt (see the module docstring).

    Args:
        rois: (N, 4) RoIs; gt_boxes: (G, 4); gt_masks: (G, H, W); assigned: (N,) gt index.

    Returns:
        (N, S, S) float {0, 1}.
    """
    num = rois.shape[0]
    if num == 0:
        return rois.new_zeros(0, mask_size, mask_size)
    ex = torch.round(rois.double()).long()  # np.round: halves to even
    gt = torch.round(gt_boxes[assigned].double()).long()
    ix1 = torch.maximum(ex[:, 0], gt[:, 0])
    iy1 = torch.maximum(ex[:, 1], gt[:, 1])
    ix2 = torch.minimum(ex[:, 2], gt[:, 2])
    iy2 = torch.minimum(ex[:, 3], gt[:, 3])
    width = (ex[:, 2] - ex[:, 0] + 1).clamp(min=1)
    height = (ex[:, 3] - ex[:, 1] + 1).clamp(min=1)
    xl, xh, fx = cv2_linear_coords(ex[:, 0], width, mask_size)
    yl, yh, fy = cv2_linear_coords(ex[:, 1], height, mask_size)
    h, w = gt_masks.shape[-2:]
    masks = gt_masks.double()

    def value(ys, xs):  # target pixel (ys, xs) in image coordinates: gt mask inside the overlap
        inside = ((ys[:, :, None] >= iy1[:, None, None]) & (ys[:, :, None] <= iy2[:, None, None])
                  & (xs[:, None, :] >= ix1[:, None, None])
                  & (xs[:, None, :] <= ix2[:, None, None]))
        yy = ys.clamp(0, h - 1)[:, :, None]
        xx = xs.clamp(0, w - 1)[:, None, :]
        vals = masks[assigned[:, None, None], yy, xx]
        return torch.where(inside, vals, torch.zeros_like(vals))

    wy, wx = fy[:, :, None], fx[:, None, :]
    out = ((1 - wy) * ((1 - wx) * value(yl, xl) + wx * value(yl, xh))
           + wy * ((1 - wx) * value(yh, xl) + wx * value(yh, xh)))
    empty = (ix1 > ix2) | (iy1 > iy2)
    out = torch.where(empty[:, None, None], torch.zeros_like(out), out)
    return (out >= binary_thresh).to(rois.dtype)


def fcis_roi_targets(rois: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_masks: Tensor,
                     mask_size: int = 21, binary_thresh: float = 0.4, fg_thresh: float = 0.5,
                     bg_thresh_hi: float = 0.5, bg_thresh_lo: float = 0.0,
                     bbox_stds=BBOX_STDS, num_reg_classes: int = 2):
    """Targets of every RoI of one image (release order: foreground, then background).

    Args:
        rois: (N, 4) proposals (the gt boxes are appended here).
        gt_boxes: (G, 4); gt_labels: (G,) int64 in [1, K); gt_masks: (G, H, W).

    Returns:
        dict: ``rois`` (M, 4) kept RoIs in target order; ``labels`` (M,) int64 (0 = bg,
        -1 = in no range); ``bbox_targets`` / ``bbox_weights`` (M, 4 * num_reg_classes);
        ``mask_targets`` (M, S, S) in {-1, 0, 1}; ``assigned`` (M,) gt index (-1 without gt).
    """
    rois = torch.cat([rois, gt_boxes.to(rois.dtype)])
    num = rois.shape[0]
    if gt_boxes.shape[0] == 0:
        overlaps = rois.new_zeros(num)
        assigned = torch.zeros(num, dtype=torch.long, device=rois.device)
    else:
        overlaps, assigned = legacy_box_iou(rois.double(), gt_boxes.double()).max(1)
    fg = torch.nonzero(overlaps >= fg_thresh).flatten() if gt_boxes.shape[0] else \
        torch.zeros(0, dtype=torch.long, device=rois.device)
    bg = torch.nonzero((overlaps < bg_thresh_hi) & (overlaps >= bg_thresh_lo)).flatten()
    keep = torch.cat([fg, bg])
    nfg = fg.numel()
    out_rois = rois[keep]
    labels = torch.zeros(keep.numel(), dtype=torch.long, device=rois.device)
    if gt_boxes.shape[0]:
        labels[:nfg] = gt_labels[assigned[fg]].long()
    reg_dim = 4 * num_reg_classes
    bbox_targets = rois.new_zeros(keep.numel(), reg_dim)
    bbox_weights = rois.new_zeros(keep.numel(), reg_dim)
    mask_targets = rois.new_full((keep.numel(), mask_size, mask_size), -1.0)
    if nfg:
        deltas = legacy_box_encode(out_rois[:nfg].double(), gt_boxes[assigned[fg]].double())
        deltas = deltas / deltas.new_tensor(bbox_stds)
        slot = labels[:nfg] if num_reg_classes > 2 else torch.ones_like(labels[:nfg])
        cols = slot[:, None] * 4 + torch.arange(4, device=rois.device)
        rows = torch.arange(nfg, device=rois.device)[:, None]
        bbox_targets[rows, cols] = deltas.to(rois.dtype)
        bbox_weights[rows, cols] = 1.0
        mask_targets[:nfg] = roi_mask_targets(out_rois[:nfg], gt_boxes, gt_masks, assigned[fg],
                                              mask_size, binary_thresh)
    out_assigned = assigned[keep] if gt_boxes.shape[0] else torch.full_like(keep, -1)
    return dict(rois=out_rois, labels=labels, bbox_targets=bbox_targets,
                bbox_weights=bbox_weights, mask_targets=mask_targets, assigned=out_assigned)
