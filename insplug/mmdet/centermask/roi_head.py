"""CenterMask's RoI head for mmdet 3.x: wires :mod:`insplug.core.centermask` (SAG-Mask,
MaskIoU, adaptive RoI levels) into training on FCOS proposals and mask prediction."""
import torch
from mmengine.model import BaseModule

from insplug.core.centermask.heads import MaskIoUHead, SAGMaskHead, gather_class, mask_loss
from insplug.core.centermask.roi import (adaptive_roi_levels, boxes_to_rois, canonical_levels,
                                         mask_targets, match_proposals, multilevel_roi_align,
                                         paste_masks, subsample_positives)
from insplug.core.losses.mask_iou import mask_iou_loss, mask_iou_targets
from insplug.mmdet.assigners.center_sampling import gt_mask_tensor
from insplug.registry import MODELS


@MODELS.register_module()
class CenterMaskRoIHead(BaseModule):
    """SAG-Mask + MaskIoU on FCOS detections.

    Args:
        num_classes: K.
        in_channels: FPN channels.
        featmap_strides: strides of the pooled levels (P3-P5: 8, 16, 32); the first
            ``len(featmap_strides)`` FPN outputs are used.
        roi_size: pooled side S (14); masks are 2S (28).
        conv_channels, num_convs: SAG-Mask tower.
        maskiou: build the MaskIoU head and rescore with it.
        loss_mask_weight, loss_maskiou_weight: 1 and 1 (official).
        pos_iou_thr: proposal-GT IoU of a positive (0.5).
        max_pos_per_img: positives per image (detectron2: 512 RoIs x 0.25).
        append_gt: add the GT boxes to the proposals in training.
        mask_thr: binarisation threshold at test time.
    """

    def __init__(self, num_classes, in_channels=256, featmap_strides=(8, 16, 32), roi_size=14,
                 conv_channels=256, num_convs=4, maskiou=True, maskiou_fc_channels=1024,
                 loss_mask_weight=1.0, loss_maskiou_weight=1.0, pos_iou_thr=0.5,
                 max_pos_per_img=128, append_gt=True, mask_thr=0.5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.featmap_strides = tuple(featmap_strides)
        self.roi_size = roi_size
        self.min_level, self.max_level = canonical_levels(self.featmap_strides)
        self.mask_head = SAGMaskHead(in_channels, conv_channels, num_convs, num_classes)
        self.maskiou_head = MaskIoUHead(in_channels, conv_channels, 4, maskiou_fc_channels,
                                        roi_size, num_classes) if maskiou else None
        self.loss_mask_weight = loss_mask_weight
        self.loss_maskiou_weight = loss_maskiou_weight
        self.pos_iou_thr = pos_iou_thr
        self.max_pos_per_img = max_pos_per_img
        self.append_gt = append_gt
        self.mask_thr = mask_thr

    def _pool(self, feats, boxes_list, metas):
        rois = boxes_to_rois(boxes_list)
        areas = torch.cat([b.new_full((len(b),), float(m['img_shape'][0] * m['img_shape'][1]))
                           for b, m in zip(boxes_list, metas)])
        levels = adaptive_roi_levels(rois[:, 1:], areas, self.min_level, self.max_level)
        return multilevel_roi_align(feats[:len(self.featmap_strides)], rois, levels,
                                    self.featmap_strides, self.roi_size)

    def loss(self, feats, proposals, batch_data_samples):
        boxes_list, labels, targets = [], [], []
        for props, sample in zip(proposals, batch_data_samples):
            gt = sample.gt_instances
            boxes = props.bboxes.detach()
            if self.append_gt:
                boxes = torch.cat([boxes, gt.bboxes.to(boxes)])
            index = match_proposals(boxes, gt.bboxes.to(boxes), self.pos_iou_thr)
            pos = subsample_positives(index, self.max_pos_per_img)
            boxes, index = boxes[pos], index[pos]
            boxes_list.append(boxes)
            labels.append(gt.labels[index])
            masks = gt_mask_tensor(gt, boxes.device) if len(index) else None
            targets.append(mask_targets(masks, index, boxes, 2 * self.roi_size)
                           if masks is not None else boxes.new_zeros((0, 2 * self.roi_size,
                                                                       2 * self.roi_size)))
        metas = [s.metainfo for s in batch_data_samples]
        pooled = self._pool(feats, boxes_list, metas)
        logits = self.mask_head(pooled)
        labels, targets = torch.cat(labels), torch.cat(targets)
        losses = dict(loss_mask=self.loss_mask_weight * mask_loss(logits, labels, targets))
        if self.maskiou_head is not None:
            probs = gather_class(logits, labels).sigmoid() if len(labels) else \
                logits.new_zeros((0, 2 * self.roi_size, 2 * self.roi_size))
            iou_t = mask_iou_targets(probs.detach(), targets, threshold=0.5)
            pred = self.maskiou_head(pooled, probs[:, None])
            losses['loss_maskiou'] = mask_iou_loss(
                gather_class(pred, labels) if len(labels) else pred.sum(1), iou_t,
                weight=self.loss_maskiou_weight)
        return losses

    def predict(self, feats, results_list, batch_img_metas, rescale=True):
        boxes_list = [r.bboxes for r in results_list]
        pooled = self._pool(feats, boxes_list, batch_img_metas)
        logits = self.mask_head(pooled)
        labels = torch.cat([r.labels for r in results_list])
        probs = gather_class(logits, labels).sigmoid() if len(labels) else logits[:, 0]
        if self.maskiou_head is not None and len(labels):
            iou = gather_class(self.maskiou_head(pooled, probs[:, None]), labels)
        else:
            iou = probs.new_ones((len(labels),))
        out = []
        for r, meta, p, q in zip(results_list, batch_img_metas,
                                 probs.split([len(r) for r in results_list]),
                                 iou.split([len(r) for r in results_list])):
            boxes = r.bboxes
            if rescale:
                sx, sy = meta['scale_factor'][:2]
                boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
                h, w = meta['ori_shape'][:2]
            else:
                h, w = meta['img_shape'][:2]
            r.bboxes = boxes
            r.scores = r.scores * q
            r.masks = paste_masks(p, boxes, h, w) >= self.mask_thr
            out.append(r)
        return out
