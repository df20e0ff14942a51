"""D2Det's second-stage training losses and test-time refinement, wired from the core pieces
(shared by the mmdet and detectron2 adapters, which only pool features and build mask targets).

Shapes: P positive RoIs (all images), N <= P of them sampled for the head; S x S cells; K
classes; M = 4S instance masks.
"""
import torch

from .dense_reg import (average_boxes, box_overlap_map, decode_dense, decode_targets,
                        dense_targets, mask_overlap_map)
from .loss import (dense_iou_loss, instance_mask_loss, mask_iou_loss, mask_iou_targets,
                   mask_scores, overlap_loss)

# the release's hard-coded loss weights (D2Det.__init__)
LOSS_WEIGHTS = dict(reg=2.0, overlap=1.0, mask=1.0, mask_iou=0.5)


def sample_regression_rois(num_pos, max_num, device=None):
    """The release's ``randperm(P)[:max_num_reg]``: (min(P, max_num),) long."""
    return torch.randperm(num_pos, device=device)[:max_num]


def dense_losses(head, reg_feats, boxes, gt_boxes, labels, sample_idx, mask_targets=None,
                 area_ratios=None, weights=None, release_broadcast=False, box_plus_one=True):
    """Losses of the dense-regression head (and its instance branch).

    Args:
        head: a :class:`D2DetHeadNet`.
        reg_feats: (P, C, R, R) RoI features of the (jittered) positive boxes.
        boxes: (P, 4) jittered positive boxes. gt_boxes: (P, 4). labels: (P,) in [0, K).
        sample_idx: (N,) the RoIs the head is trained on.
        mask_targets: (P, M, M) {0, 1} (instance variant; None: detection variant).
        area_ratios: (P,) share of each GT mask inside its RoI (instance variant).
        weights: dict reg / overlap / mask / mask_iou (default :data:`LOSS_WEIGHTS`).

    Returns:
        dict loss_reg, loss_overlap (+ loss_mask, loss_mask_iou).
    """
    w = dict(LOSS_WEIGHTS, **(weights or {}))
    idx = sample_idx
    reg, overlap_logits, feats = head(reg_feats[idx])
    points, targets = dense_targets(boxes[idx], gt_boxes[idx], head.map_size)
    losses = {}
    if mask_targets is not None:
        masks = mask_targets[idx]
        overlap = mask_overlap_map(masks, head.map_size)
        mask_logits, iou = head.forward_mask(feats, labels[idx])
        losses['loss_mask'] = instance_mask_loss(mask_logits, masks, labels[idx], w['mask'])
        rng = torch.arange(idx.shape[0], device=idx.device)
        own = mask_logits[rng, labels[idx]].detach()
        iou_targets = mask_iou_targets(own, masks, area_ratios[idx])
        losses['loss_mask_iou'] = mask_iou_loss(iou[rng, labels[idx]], iou_targets,
                                                w['mask_iou'],
                                                release_broadcast=release_broadcast)
    else:
        overlap = box_overlap_map(boxes[idx], gt_boxes[idx], head.map_size)
    losses['loss_reg'] = dense_iou_loss(decode_dense(reg, points), decode_targets(targets, points),
                                        overlap, w['reg'], offset=1.0 if box_plus_one else 0.0,
                                        release_broadcast=release_broadcast)
    losses['loss_overlap'] = overlap_loss(overlap_logits, overlap, w['overlap'])
    return losses


def refine_boxes(head, reg_feats, boxes):
    """Test: the averaged dense-regression box of each detection. (N, C, R, R), (N, 4) -> (N, 4)."""
    reg, overlap, _ = head(reg_feats)
    return average_boxes(boxes, reg, overlap)


def instance_masks(head, reg_feats, labels, scores, score_weight=0.3):
    """Test: own-class mask probabilities and mask scores of the refined detections.

    Args:
        reg_feats: (N, C, R, R) features of the refined boxes. labels: (N,). scores: (N,).

    Returns:
        probs: (N, M, M); mask_scores: (N,) box score + 0.3 * predicted mask IoU.
    """
    _, _, feats = head(reg_feats)
    mask_logits, iou = head.forward_mask(feats, labels)
    rng = torch.arange(labels.shape[0], device=labels.device)
    return (mask_logits[rng, labels].sigmoid(),
            mask_scores(scores, iou[rng, labels], score_weight))
