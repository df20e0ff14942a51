"""``ProtoMaskHead``: a YOLACT-style prototype mask head built on the registered
``ProtoNetEncoder``, the shared assembly helper and (optionally) YOLACT++ fast mask-IoU
rescoring. Drop-in replacement of mmdet's ``YOLACTProtonet`` next to ``YOLACTBoxHead`` or
``YOLACTHead`` (whose positive infos carry ``coeffs``, ``pos_assigned_gt_inds`` and the
matched GT ``bboxes``).

Maths: :mod:`insplug.core.prototypes.assembly`, :mod:`insplug.core.prototypes.mask_rescoring`,
:mod:`insplug.core.losses.mask_iou`.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads.base_mask_head import BaseMaskHead
from mmdet.models.utils.misc import empty_instances
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.losses.mask_iou import mask_iou_loss, mask_iou_targets
from insplug.core.prototypes import assembly as A
from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet, gather_class_iou, rescore
from insplug.mmdet.postprocess.nms import apply_nms_to_results, build_nms
from insplug.registry import MODELS

__all__ = ['ProtoMaskHead']


@MODELS.register_module()
class ProtoMaskHead(BaseMaskHead):
    """Prototypes x coefficients mask head (YOLACT) with optional fast mask-IoU rescoring
    (YOLACT++).

    Args:
        num_classes: K.
        protonet: config of the prototype encoder (default YOLACT: P3, 256 channels, 32
            prototypes, ReLU); its ``num_protos`` must equal the box head's ``num_protos``.
        loss_mask_weight: YOLACT's mask loss weight (6.125).
        max_masks_to_train: random subset of positives per image (YOLACT: 100).
        crop_padding: crop padding on the prototype grid (1).
        with_seg_branch: YOLACT's auxiliary semantic segmentation (1x1 conv on P3, per-class
            sigmoid BCE averaged over pixels and images), weight ``loss_segm_weight`` (1.0).
        with_mask_iou: add YOLACT++'s FastMaskIoUNet; trained on the (detached) cropped masks
            to regress the IoU of the binarised mask with its GT (smooth L1, averaged over
            masks, weight ``loss_mask_iou_weight`` = 25), used at test time to rescale scores.
        discard_mask_area: masks whose GT covers at most this many prototype-grid pixels are
            left out of the mask-IoU loss (YOLACT++: 25).
        test_cfg: ``mask_thr`` (0.5); optional ``mask_nms`` (a registered NMS applied after
            mask assembly and rescoring, e.g. ``dict(type='MaskIoUNMS', iou_thr=0.5)``).
    """

    def __init__(self, num_classes: int, protonet: Optional[dict] = None,
                 loss_mask_weight: float = 6.125, max_masks_to_train: int = 100,
                 crop_padding: int = 1, with_seg_branch: bool = True,
                 loss_segm_weight: float = 1.0, with_mask_iou: bool = False,
                 loss_mask_iou_weight: float = 25.0, discard_mask_area: int = 25,
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
        self.loss_segm_weight = loss_segm_weight
        self.mask_iou_net = FastMaskIoUNet(num_classes) if with_mask_iou else None
        self.loss_mask_iou_weight = loss_mask_iou_weight
        self.discard_mask_area = discard_mask_area
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def forward(self, x, positive_infos=None):
        protos = self.protonet(x)
        segm = self.segm_conv(x[0]) if self.segm_conv is not None and self.training else None
        return protos, segm

    @staticmethod
    def _to_grid(boxes: Tensor, protos: Tensor, meta: dict) -> Tensor:
        """Image-pixel boxes (N, 4) -> prototype-grid pixels (the grid spans the padded input)."""
        pad_h, pad_w = meta['batch_input_shape']
        h, w = protos.shape[-2:]
        return boxes * boxes.new_tensor([w / pad_w, h / pad_h, w / pad_w, h / pad_h])

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, protos: Tensor, segm: Optional[Tensor],
                     batch_gt_instances: List[InstanceData], batch_img_metas: List[dict],
                     positive_infos: List[InstanceData], **kwargs) -> dict:
        if positive_infos is None:
            raise ValueError('ProtoMaskHead needs positive_infos (coeffs) from its box head, '
                             "e.g. bbox_head=dict(type='YOLACTBoxHead', num_protos=...)")
        grid = protos.shape[-2:]
        per_mask, probs_all, targets_all, labels_all = [], [], [], []
        for i, (gt, pos) in enumerate(zip(batch_gt_instances, positive_infos)):
            gt_inds, coeffs = pos.pos_assigned_gt_inds, pos.coeffs
            if coeffs.size(1) != self.num_protos:
                raise ValueError(f'box head predicts {coeffs.size(1)} coefficients but the '
                                 f'protonet has {self.num_protos} prototypes: make '
                                 'bbox_head.num_protos equal protonet.num_protos')
            if gt_inds.numel() == 0 or len(gt) == 0:
                continue
            if 0 < self.max_masks_to_train < gt_inds.numel():
                sel = torch.randperm(gt_inds.numel(), device=gt_inds.device)
                sel = sel[:self.max_masks_to_train]
                gt_inds, coeffs = gt_inds[sel], coeffs[sel]
            boxes = self._to_grid(gt.bboxes[gt_inds], protos, batch_img_metas[i])
            probs = A.assemble_masks(protos[i], coeffs, boxes, self.crop_padding)
            small = A.downsample_gt_masks(
                gt.masks.to_tensor(dtype=torch.bool, device=protos.device), grid)
            targets = small[gt_inds]
            per_mask.append(A.proto_mask_loss(probs, targets, boxes))
            probs_all.append(probs)
            targets_all.append(targets)
            labels_all.append(gt.labels[gt_inds])
        losses = {}
        if per_mask:
            per_mask = torch.cat(per_mask)
            losses['loss_mask'] = per_mask.mean() * self.loss_mask_weight
        else:
            losses['loss_mask'] = protos.sum() * 0 + \
                sum(p.coeffs.sum() * 0 for p in positive_infos)
        if segm is not None:
            targets = torch.stack([
                A.semantic_targets_multilabel(
                    gt.masks.to_tensor(dtype=torch.bool, device=protos.device), gt.labels,
                    self.num_classes, segm.shape[-2:]) for gt in batch_gt_instances])
            losses['loss_segm'] = F.binary_cross_entropy_with_logits(
                segm, targets, reduction='mean') * self.loss_segm_weight
        if self.mask_iou_net is not None:
            losses['loss_mask_iou'] = self._mask_iou_loss(probs_all, targets_all, labels_all,
                                                          protos)
        return losses

    def _mask_iou_loss(self, probs_all, targets_all, labels_all, protos):
        zero = sum(p.sum() * 0 for p in self.mask_iou_net.parameters())
        if not probs_all:
            return zero
        probs, targets = torch.cat(probs_all).detach(), torch.cat(targets_all)
        labels = torch.cat(labels_all)
        keep = targets.flatten(1).sum(1) > self.discard_mask_area
        if not keep.any():
            return zero
        probs, targets, labels = probs[keep], targets[keep], labels[keep]
        pred = gather_class_iou(self.mask_iou_net(probs), labels)
        target = mask_iou_targets(probs, targets)
        return mask_iou_loss(pred, target, self.loss_mask_iou_weight, loss_type='smooth_l1')

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, protos: Tensor, segm, results_list: List[InstanceData],
                        batch_img_metas: List[dict], rescale: bool = True, **kwargs):
        cfg = self.test_cfg or {}
        mask_thr = cfg.get('mask_thr', 0.5)
        mask_nms = cfg.get('mask_nms', None)
        out = []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            if len(results) == 0:
                out.append(empty_instances([meta], protos.device, task_type='mask',
                                           instance_results=[results])[0])
                continue
            boxes = self._to_grid(results.bboxes, protos, meta)
            probs = A.assemble_masks(protos[i], results.coeffs, boxes, self.crop_padding)
            new = InstanceData(bboxes=results.bboxes, labels=results.labels,
                               scores=results.scores)
            if self.mask_iou_net is not None:
                iou = gather_class_iou(self.mask_iou_net(probs), results.labels)
                new.scores = rescore(results.scores, iou)
            pad_h, pad_w = meta['batch_input_shape']
            img_h, img_w = meta['img_shape'][:2]
            full = F.interpolate(probs[None], size=(pad_h, pad_w), mode='bilinear',
                                 align_corners=False)[:, :, :img_h, :img_w]
            if rescale:
                ori_h, ori_w = meta['ori_shape'][:2]
                full = F.interpolate(full, size=(ori_h, ori_w), mode='bilinear',
                                     align_corners=False)
                new.bboxes = new.bboxes / new.bboxes.new_tensor(
                    meta['scale_factor']).repeat(1, 2)
            new.masks = full[0] > mask_thr
            if mask_nms is not None:
                new = apply_nms_to_results(new, build_nms(mask_nms))
            elif self.mask_iou_net is not None:  # keep results sorted by the new scores
                new = new[new.scores.argsort(descending=True)]
            out.append(new)
        return out
