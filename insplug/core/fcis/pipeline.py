"""FCIS training step and per-image inference on top of the head, shared by the mmdet and the
detectron2 adapters (which only convert boxes, labels and masks to and from their structures).

Shapes: B images; per image N proposals (N, 4) and G ground truths: inclusive boxes (G, 4),
labels (G,) in [1, K) (K classes with background 0), masks (G, H, W); the head's C5 feature
(B, D, Hf, Wf).
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .boxes import clip_boxes
from .head import FCISHeadNet, fcis_roi_outputs, inference_probs, pick_class
from .inference import keep_min_size, mask_voting, parse_boxes, paste_cv2
from .loss import LOSS_WEIGHTS, fcis_losses, ohem_select
from .targets import BBOX_STDS, fcis_roi_targets

TRAIN_DEFAULTS = dict(ohem_rois=128, loss_weights=LOSS_WEIGHTS, binary_thresh=0.4,
                      fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.0, bbox_stds=BBOX_STDS,
                      batch_rois=128)
TEST_DEFAULTS = dict(iterations=2, min_drop_size=2, nms=0.3, merge_thr=0.5, max_per_img=100,
                     binary_thresh=0.4, score_floor=1e-3, bbox_stds=BBOX_STDS)


def _rois(boxes_list: List[Tensor]) -> Tensor:
    """(R, 5) batch index + box of every image's boxes."""
    return torch.cat([torch.cat([b.new_full((b.shape[0], 1), i), b], 1)
                      for i, b in enumerate(boxes_list)])


def fcis_train_step(head: FCISHeadNet, feat: Tensor, proposals: List[Tensor],
                    gt_boxes: List[Tensor], gt_labels: List[Tensor], gt_masks: List[Tensor],
                    pooled_size: int = 21, spatial_scale: float = 1 / 16,
                    cfg: Optional[Dict] = None) -> Dict[str, Tensor]:
    """Targets (every proposal + gt), head outputs, per-image OHEM and the three losses.

    Args:
        head: the FCIS head; feat: (B, D, Hf, Wf) C5.
        proposals: B (N_i, 4) (detached here); gt_boxes: B (G_i, 4) inclusive;
        gt_labels: B (G_i,) in [1, K); gt_masks: B (G_i, H, W).
        cfg: keys of :data:`TRAIN_DEFAULTS` (``ohem_rois <= 0``: no OHEM, normaliser
            ``batch_rois``).

    Returns:
        dict ``loss_cls``, ``loss_seg``, ``loss_bbox``.
    """
    cfg = dict(TRAIN_DEFAULTS, **(cfg or {}))
    targets = [fcis_roi_targets(p.detach().float(), b.float(), l.long(), m,
                                mask_size=pooled_size, binary_thresh=cfg['binary_thresh'],
                                fg_thresh=cfg['fg_thresh'], bg_thresh_hi=cfg['bg_thresh_hi'],
                                bg_thresh_lo=cfg['bg_thresh_lo'], bbox_stds=cfg['bbox_stds'])
               for p, b, l, m in zip(proposals, gt_boxes, gt_labels, gt_masks)]
    maps = head(feat)
    cls_score, seg_logits, bbox_pred = fcis_roi_outputs(
        *maps, _rois([t['rois'] for t in targets]), head.num_scores, head.num_reg_classes,
        head.group_size, pooled_size, spatial_scale)
    cat = {k: torch.cat([t[k] for t in targets]) for k in
           ('labels', 'mask_targets', 'bbox_targets', 'bbox_weights')}
    seg_pair = pick_class(seg_logits, cat['labels'])
    ohem_rois = cfg['ohem_rois']
    if ohem_rois > 0:
        picked, start = [], 0
        for t in targets:  # OHEM ranks each image's RoIs (one image per GPU in the release)
            sl = slice(start, start + t['labels'].numel())
            start = sl.stop
            picked.append(ohem_select(cls_score[sl], seg_pair[sl], bbox_pred[sl],
                                      cat['labels'][sl], cat['mask_targets'][sl],
                                      cat['bbox_targets'][sl], cat['bbox_weights'][sl],
                                      ohem_rois, cfg['loss_weights']))
        cat['labels'], cat['mask_targets'], cat['bbox_weights'] = [
            torch.cat(parts) for parts in zip(*picked)]
    return fcis_losses(cls_score, seg_pair, bbox_pred, cat['labels'], cat['mask_targets'],
                       cat['bbox_targets'], cat['bbox_weights'], num_images=len(targets),
                       ohem_rois=ohem_rois if ohem_rois > 0 else cfg['batch_rois'],
                       loss_weights=cfg['loss_weights'])


def fcis_predict_image(head: FCISHeadNet, maps, proposals: Tensor, input_hw, output_hw,
                       scale_xy=(1.0, 1.0), pooled_size: int = 21,
                       spatial_scale: float = 1 / 16, cfg: Optional[Dict] = None,
                       paste: bool = True):
    """Two iterations, candidate filtering, rescaling and mask voting for one image.

    Args:
        head: the FCIS head; maps: its two score maps for this image ((1, ., Hf, Wf) each).
        proposals: (N, 4) in input pixels; input_hw: (h, w) of the (resized) input;
        output_hw: (H, W) of the output image; scale_xy: input pixels per output pixel.
        cfg: keys of :data:`TEST_DEFAULTS`.
        paste: paste the voted masks into the image (``mask_voc2coco``).

    Returns:
        boxes (D, 4) inclusive integer-valued (output pixels); scores (D,); labels (D,) in
        [1, K); masks: (D, H, W) bool when ``paste``, else the (D, S, S) voted masks.
    """
    cfg = dict(TEST_DEFAULTS, **(cfg or {}))
    h, w = input_hw
    boxes = proposals.float()
    cand = [], [], []
    for _ in range(cfg['iterations']):
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], 1)
        cls_score, seg_logits, bbox_pred = fcis_roi_outputs(
            *maps, rois, head.num_scores, head.num_reg_classes, head.group_size, pooled_size,
            spatial_scale)
        prob, mask = inference_probs(cls_score, seg_logits)
        for store, value in zip(cand, (boxes, prob, mask)):
            store.append(value)
        boxes = parse_boxes(boxes, bbox_pred, h, w, stds=cfg['bbox_stds'])
    boxes, probs, masks = [torch.cat(c) for c in cand]
    if cfg['iterations'] == 2 and cfg['min_drop_size'] > 0:
        keep = keep_min_size(boxes, cfg['min_drop_size'])
        boxes, probs, masks = boxes[keep], probs[keep], masks[keep]
    sx, sy = scale_xy
    boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
    oh, ow = output_hw
    boxes = clip_boxes(boxes, oh, ow)
    thr = cfg['binary_thresh']
    vb, vm, labels, scores = mask_voting(boxes, masks, probs, oh, ow, nms_thr=cfg['nms'],
                                         merge_thr=cfg['merge_thr'],
                                         max_per_image=cfg['max_per_img'], binary_thresh=thr,
                                         score_floor=cfg['score_floor'])
    return vb, scores, labels, (paste_cv2(vm, vb, oh, ow, thr) if paste else vm)
