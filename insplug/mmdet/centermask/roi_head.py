"""CenterMask's RoI head for mmdet 3.x: wires :mod:`insplug.core.centermask` (SAG-Mask,
MaskIoU, adaptive RoI levels, centermask2's MaskIoU targets and loss) into training on FCOS
proposals and mask prediction.

Predictions keep the FCOS box score in ``scores`` and put the MaskIoU-rescored score in
``mask_scores`` (centermask2's ``mask_scores``): mmdet's ``CocoMetric`` ranks segm results by
``mask_scores`` when present and bbox results by ``scores``, as centermask2's evaluator does.
"""
import torch
from mmdet.structures.mask import PolygonMasks
from mmengine.model import BaseModule

from insplug.core.centermask.heads import MaskIoUHead, SAGMaskHead
from insplug.core.centermask.maskiou import bitmap_area_ratios, polygon_area_ratios
from insplug.core.centermask.roi import (canonical_levels, clip_nonempty, mask_targets,
                                         paste_masks, polygon_mask_targets)
from insplug.core.centermask.roi_head import (centermask_roi_inference, centermask_roi_losses,
                                              pool_rois, select_positive_rois)
from insplug.mmdet.assigners.center_sampling import gt_mask_tensor
from insplug.registry import MODELS


def roi_mask_targets(gt_instances, index, boxes, size, with_ratios):
    """(P, M, M) mask targets and (P,) area ratios (or None) of the RoIs ``boxes`` matched to
    objects ``index``: polygons are rasterised in the box (detectron2 / centermask2 on COCO),
    bitmaps are RoIAligned."""
    masks = gt_instances.masks if 'masks' in gt_instances else None
    if isinstance(masks, PolygonMasks):
        polys = [masks.masks[i] for i in index.tolist()]
        targets = polygon_mask_targets(polys, boxes, size)
        ratios = polygon_area_ratios(polys, boxes) if with_ratios else None
        return targets, ratios
    bitmaps = gt_mask_tensor(gt_instances, boxes.device)
    targets = mask_targets(bitmaps, index, boxes, size)
    ratios = bitmap_area_ratios(bitmaps, index, boxes) if with_ratios else None
    return targets, ratios


@MODELS.register_module()
class CenterMaskRoIHead(BaseModule):
    """SAG-Mask + MaskIoU on FCOS detections (centermask2's ``CenterROIHeads``).

    Args:
        num_classes: K.
        in_channels: FPN channels.
        featmap_strides: strides of the pooled levels (P3-P5: 8, 16, 32); the first
            ``len(featmap_strides)`` FPN outputs are used.
        roi_size: pooled side S (14); masks are 2S (28).
        conv_channels, num_convs: SAG-Mask tower (ROI_MASK_HEAD.CONV_DIM / NUM_CONV).
        maskiou: build the MaskIoU head and rescore with it (MASKIOU_ON).
        maskiou_conv_channels, maskiou_num_convs: ROI_MASKIOU_HEAD.CONV_DIM / NUM_CONV
            (default: the mask head's width, 4 convs).
        maskiou_fc_channels: 1024 in centermask2.
        loss_mask_weight: 1; loss_maskiou_weight: MASKIOU_LOSS_WEIGHT (1).
        pos_iou_thr: proposal-GT IoU of a positive (0.5).
        max_pos_per_img: positives per image (detectron2: 512 RoIs x 0.25 = 128).
        append_gt: add the GT boxes to the proposals in training.
        mask_thr: binarisation threshold of pasted masks (>=, 0.5).
    """

    def __init__(self, num_classes, in_channels=256, featmap_strides=(8, 16, 32), roi_size=14,
                 conv_channels=256, num_convs=4, maskiou=True, maskiou_conv_channels=None,
                 maskiou_num_convs=4, maskiou_fc_channels=1024, loss_mask_weight=1.0,
                 loss_maskiou_weight=1.0, pos_iou_thr=0.5, max_pos_per_img=128, append_gt=True,
                 mask_thr=0.5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.featmap_strides = tuple(featmap_strides)
        self.roi_size = roi_size
        self.min_level, self.max_level = canonical_levels(self.featmap_strides)
        self.mask_head = SAGMaskHead(in_channels, conv_channels, num_convs, num_classes)
        self.maskiou_head = MaskIoUHead(
            in_channels, maskiou_conv_channels or conv_channels, maskiou_num_convs,
            maskiou_fc_channels, roi_size, num_classes) if maskiou else None
        self.loss_mask_weight = loss_mask_weight
        self.loss_maskiou_weight = loss_maskiou_weight
        self.pos_iou_thr = pos_iou_thr
        self.max_pos_per_img = max_pos_per_img
        self.append_gt = append_gt
        self.mask_thr = mask_thr

    def _pool(self, feats, boxes_list, metas):
        return pool_rois(feats, boxes_list, [m['img_shape'][:2] for m in metas],
                         self.featmap_strides, self.roi_size)

    def loss(self, feats, proposals, batch_data_samples):
        size = 2 * self.roi_size
        with_iou = self.maskiou_head is not None
        boxes_list, labels, targets, ratios = [], [], [], []
        for props, sample in zip(proposals, batch_data_samples):
            gt = sample.gt_instances
            boxes, index = select_positive_rois(props.bboxes, gt.bboxes, self.pos_iou_thr,
                                                self.max_pos_per_img, self.append_gt)
            boxes_list.append(boxes)
            labels.append(gt.labels[index])
            if len(index):
                t, r = roi_mask_targets(gt, index, boxes, size, with_iou)
            else:
                t, r = boxes.new_zeros((0, size, size)), boxes.new_zeros((0,), dtype=torch.float64)
            targets.append(t)
            ratios.append(r)
        metas = [s.metainfo for s in batch_data_samples]
        pooled = self._pool(feats, boxes_list, metas)
        return centermask_roi_losses(self.mask_head, self.maskiou_head, pooled,
                                     torch.cat(labels), torch.cat(targets),
                                     torch.cat(ratios) if with_iou else None,
                                     self.loss_mask_weight, self.loss_maskiou_weight)

    def predict(self, feats, results_list, batch_img_metas, rescale=True):
        """Masks for FCOS detections (boxes in ``img_shape`` coordinates, unclipped).

        Returns per image an InstanceData with ``bboxes`` (rescaled to ``ori_shape`` if
        ``rescale``, clipped to the image), ``scores`` (FCOS), ``mask_scores`` (FCOS score x
        predicted MaskIoU; equal to ``scores`` without the MaskIoU head), ``labels`` and
        ``masks`` (H, W) bool; detections whose clipped box is empty are dropped, as
        detectron2's ``detector_postprocess`` does.
        """
        boxes_list = [r.bboxes for r in results_list]
        pooled = self._pool(feats, boxes_list, batch_img_metas)
        labels = torch.cat([r.labels for r in results_list])
        probs, iou = centermask_roi_inference(self.mask_head, self.maskiou_head, pooled, labels)
        out = []
        counts = [len(r) for r in results_list]
        for r, meta, p, q in zip(results_list, batch_img_metas, probs.split(counts),
                                 iou.split(counts)):
            boxes = r.bboxes
            if rescale:
                sx, sy = meta['scale_factor'][:2]
                boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
                h, w = meta['ori_shape'][:2]
            else:
                h, w = meta['img_shape'][:2]
            boxes, keep = clip_nonempty(boxes, h, w)
            r.bboxes = boxes
            r.mask_scores = r.scores * q
            r = r[keep]
            r.masks = paste_masks(p[keep], r.bboxes, h, w, threshold=self.mask_thr)
            out.append(r)
        return out
