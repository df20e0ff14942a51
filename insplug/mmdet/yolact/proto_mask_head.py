"""``ProtoMaskHead``: YOLACT's prototype mask branch (protonet, semantic segmentation branch,
YOLACT++ fast mask-IoU net) with the release's losses and post-processing (dbolya/yolact), next to
:class:`insplug.mmdet.yolact.box_head.YOLACTBoxHead` (whose positive infos carry ``coeffs``,
``pos_assigned_gt_inds`` and the batch's ``num_total_pos``).

Maths: :mod:`insplug.core.prototypes.yolact` (losses, crop, boxes),
:mod:`insplug.core.prototypes.assembly` (GT downsampling, semantic targets),
:mod:`insplug.core.prototypes.mask_rescoring` (mask-IoU net).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads.base_mask_head import BaseMaskHead
from mmdet.models.utils.misc import empty_instances
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.prototypes import assembly as A
from insplug.core.prototypes import yolact as Y
from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet, gather_class_iou
from insplug.mmdet.postprocess.nms import apply_nms_to_results, build_nms
from insplug.mmdet.yolact.box_head import YOLACTBoxHead, input_size
from insplug.registry import MODELS

__all__ = ['ProtoMaskHead']


@MODELS.register_module()
class ProtoMaskHead(BaseMaskHead):
    """Prototypes x coefficients mask head (YOLACT) with optional fast mask-IoU rescoring
    (YOLACT++), trained and post-processed as the release.

    Args:
        num_classes: K.
        protonet: config of the prototype encoder (default YOLACT: P3, 256 channels, 32
            prototypes, ReLU); its ``num_protos`` must equal the box head's ``num_protos``.
        loss_mask_weight: ``mask_alpha`` (6.125).
        max_masks_to_train: ``masks_to_train`` (100): random positives per image; the subset's
            summed loss is scaled by (number of positives / 100).
        crop_padding: crop padding on the prototype grid (1).
        with_seg_branch: YOLACT's semantic segmentation branch (1x1 conv on P3; BCE summed over
            classes and pixels / (h * w), averaged over images), weight ``loss_segm_weight`` (1).
        with_mask_iou: YOLACT++'s FastMaskIoUNet (smooth-L1 summed, weight
            ``loss_mask_iou_weight`` = 25, divided by the batch's positives).
        detach_mask_iou_input: False (release: the mask-IoU loss also trains the coefficients and
            prototypes); True stops that gradient.
        discard_mask_area: positives whose GT covers at most this many prototype-grid pixels
            are left out of the mask-IoU loss (YOLACT++: 25).
        test_cfg: ``mask_thr`` (0.5); ``rescore_bbox`` (False: the box keeps its score and the
            mask gets ``score * predicted IoU`` as ``mask_scores``, which mmdet's CocoMetric uses
            for segm; True: both are rescored); ``integer_boxes`` (True); ``drop_empty`` (True: as
            the release's COCO output, detections whose integer box has no area are dropped);
            optional ``mask_nms`` (a registered NMS after mask assembly, not in the release).
    """

    def __init__(self, num_classes: int, protonet: Optional[dict] = None,
                 loss_mask_weight: float = 6.125, max_masks_to_train: int = 100,
                 crop_padding: int = 1, with_seg_branch: bool = True,
                 loss_segm_weight: float = 1.0, with_mask_iou: bool = False,
                 loss_mask_iou_weight: float = 25.0, discard_mask_area: int = 25,
                 detach_mask_iou_input: bool = False,
                 in_channels: int = 256, train_cfg=None, test_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if protonet is None:
            protonet = dict(type='ProtoNetEncoder', in_channels=in_channels)
        self.protonet = MODELS.build(protonet)
        self.num_classes = num_classes
        self.num_protos = self.protonet.num_protos
        self.loss_mask_weight = loss_mask_weight
        self.max_masks_to_train = max_masks_to_train
        self.crop_padding = crop_padding
        self.segm_conv = nn.Conv2d(in_channels, num_classes, 1) if with_seg_branch else None
        if self.segm_conv is not None:
            nn.init.xavier_uniform_(self.segm_conv.weight)
            nn.init.zeros_(self.segm_conv.bias)
        self.loss_segm_weight = loss_segm_weight
        self.mask_iou_net = FastMaskIoUNet(num_classes) if with_mask_iou else None
        self.loss_mask_iou_weight = loss_mask_iou_weight
        self.discard_mask_area = discard_mask_area
        self.detach_mask_iou_input = detach_mask_iou_input
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def forward(self, x, positive_infos=None):
        protos = self.protonet(x)
        segm = self.segm_conv(x[0]) if self.segm_conv is not None and self.training else None
        return protos, segm

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, protos: Tensor, segm: Optional[Tensor],
                     batch_gt_instances: List[InstanceData], batch_img_metas: List[dict],
                     positive_infos: List[InstanceData], **kwargs) -> dict:
        if positive_infos is None or 'num_total_pos' not in positive_infos[0].metainfo:
            raise ValueError('ProtoMaskHead needs positive_infos from YOLACTBoxHead (coeffs, '
                             'pos_assigned_gt_inds, num_total_pos)')
        grid = protos.shape[-2:]
        coeffs, gt_inds, gt_boxes, gt_masks, gt_labels = [], [], [], [], []
        for gt, pos, meta in zip(batch_gt_instances, positive_infos, batch_img_metas):
            if pos.coeffs.size(1) != self.num_protos:
                raise ValueError(f'box head predicts {pos.coeffs.size(1)} coefficients but the '
                                 f'protonet has {self.num_protos} prototypes: make '
                                 'bbox_head.num_protos equal protonet.num_protos')
            h, w = input_size(meta)
            coeffs.append(pos.coeffs)
            gt_inds.append(pos.pos_assigned_gt_inds)
            gt_boxes.append(gt.bboxes.to(protos.dtype) / gt.bboxes.new_tensor([w, h, w, h]))
            gt_labels.append(gt.labels)
            if len(gt):
                gt_masks.append(A.downsample_gt_masks(
                    gt.masks.to_tensor(dtype=torch.bool, device=protos.device), grid))
            else:
                gt_masks.append(protos.new_zeros((0, *grid)))
        num_pos = float(max(positive_infos[0].num_total_pos, 1))
        loss_m, maskiou = Y.proto_mask_losses(
            protos, coeffs, gt_inds, gt_boxes, gt_masks, gt_labels, self.max_masks_to_train,
            self.crop_padding, self.discard_mask_area, self.mask_iou_net is not None)
        zero = sum(c.sum() * 0 for c in coeffs)
        losses = dict(loss_mask=(loss_m + zero) * self.loss_mask_weight / grid[0] / grid[1] /
                      num_pos)
        if segm is not None:
            targets = torch.stack([
                A.semantic_targets_multilabel(
                    gt.masks.to_tensor(dtype=torch.bool, device=protos.device), gt.labels,
                    self.num_classes, segm.shape[-2:]) if len(gt) else
                segm.new_zeros(segm.shape[1:]) for gt in batch_gt_instances])
            losses['loss_segm'] = Y.semantic_seg_loss(segm, targets.to(segm.dtype)) / \
                segm.size(0) * self.loss_segm_weight
        if self.mask_iou_net is not None:
            losses['loss_mask_iou'] = self._mask_iou_loss(maskiou, num_pos)
        return losses

    def _mask_iou_loss(self, maskiou, num_pos: float) -> Tensor:
        zero = sum(p.sum() * 0 for p in self.mask_iou_net.parameters())
        if maskiou is None:
            return zero
        inputs, targets, labels = maskiou
        if self.detach_mask_iou_input:
            inputs = inputs.detach()
        pred = gather_class_iou(self.mask_iou_net(inputs), labels)
        loss = F.smooth_l1_loss(pred, targets.to(pred.dtype), reduction='sum')
        return loss * self.loss_mask_iou_weight / num_pos + zero

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, protos: Tensor, segm, results_list: List[InstanceData],
                        batch_img_metas: List[dict], rescale: bool = True, **kwargs):
        cfg = self.test_cfg or {}
        mask_thr = cfg.get('mask_thr', 0.5)
        mask_nms = cfg.get('mask_nms', None)
        out = []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            if len(results) == 0:
                res = empty_instances([meta], protos.device, task_type='mask',
                                      instance_results=[results])[0]
                out.append(res)
                continue
            k, gh, gw = protos.shape[1:]
            probs = torch.sigmoid(results.coeffs @ protos[i].reshape(k, gh * gw))
            probs = Y._crop_rel(probs.reshape(-1, gh, gw), results.rel_bboxes,
                                self.crop_padding)
            new = InstanceData(labels=results.labels, scores=results.scores)
            if self.mask_iou_net is not None:
                iou = gather_class_iou(self.mask_iou_net(probs[:, None]), results.labels)
                new.mask_scores = results.scores * iou          # no clamp, as the release
                if cfg.get('rescore_bbox', False):
                    new.scores = new.mask_scores
            h, w = input_size(meta)
            img_h, img_w = meta['img_shape'][:2]
            size = tuple(meta['ori_shape'][:2]) if rescale else (img_h, img_w)
            new.masks = self.upsample_masks(probs, (h, w), (img_h, img_w), size) > mask_thr
            if rescale:
                new.bboxes = YOLACTBoxHead.output_boxes(results.rel_bboxes, meta, cfg)
            else:
                new.bboxes = Y.sanitize_boxes(results.rel_bboxes, img_w, img_h, False) \
                    if (h, w) == (img_h, img_w) else \
                    results.rel_bboxes * results.rel_bboxes.new_tensor([w, h, w, h])
            if cfg.get('drop_empty', True):
                keep = ((new.bboxes[:, 2] - new.bboxes[:, 0]) *
                        (new.bboxes[:, 3] - new.bboxes[:, 1])) > 0
                new = new[keep]
            if mask_nms is not None:
                new = apply_nms_to_results(new, build_nms(mask_nms))
            out.append(new)
        return out

    @staticmethod
    def upsample_masks(probs: Tensor, input_hw, img_hw, size) -> Tensor:
        """(N, H, W) prototype-grid masks spanning the (padded) input -> (N, *size) covering the
        image, in one bilinear step (the release: ``F.interpolate`` to the original size)."""
        if probs.numel() == 0:
            return probs.new_zeros((0, *size))
        if tuple(input_hw) == tuple(img_hw):
            return F.interpolate(probs[None], size=size, mode='bilinear',
                                 align_corners=False)[0]
        # padded input: sample the image's part of the grid (align_corners=False geometry)
        gh, gw = probs.shape[-2:]
        fy, fx = img_hw[0] / input_hw[0], img_hw[1] / input_hw[1]
        ys = ((torch.arange(size[0], device=probs.device, dtype=probs.dtype) + 0.5) /
              size[0] * fy * 2 - 1)
        xs = ((torch.arange(size[1], device=probs.device, dtype=probs.dtype) + 0.5) /
              size[1] * fx * 2 - 1)
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        grid = torch.stack([gx, gy], -1)[None].expand(probs.size(0), -1, -1, -1)
        return F.grid_sample(probs[:, None], grid, mode='bilinear', padding_mode='border',
                             align_corners=False)[:, 0]
