"""``ProtoMaskHead``: YOLACT's prototype mask branch (protonet, semantic segmentation branch,
YOLACT++ fast mask-IoU net) with the release's losses and post-processing (dbolya/yolact), next to
:class:`insplug.mmdet.yolact.box_head.YOLACTBoxHead` (whose positive infos carry ``coeffs``,
``pos_assigned_gt_inds`` and the batch's ``num_total_pos``).

Maths: :mod:`insplug.core.prototypes.yolact` (losses with their normalisers, assembly, crop,
rescoring, upsampling, boxes: ``mask_branch_losses``, ``postprocess``),
:mod:`insplug.core.prototypes.assembly` (GT downsampling, semantic targets),
:mod:`insplug.core.prototypes.mask_rescoring` (mask-IoU net).
"""
from typing import List, Optional

import torch
from mmdet.models.dense_heads.base_mask_head import BaseMaskHead
from mmdet.models.utils.misc import empty_instances
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.prototypes import yolact as Y
from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet
from insplug.mmdet.postprocess.nms import apply_nms_to_results, build_nms
from insplug.mmdet.yolact.box_head import input_size
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
            gt_masks.append(gt.masks.to_tensor(dtype=torch.bool, device=protos.device)
                            if len(gt) else protos.new_zeros((0, 0, 0), dtype=torch.bool))
        return Y.mask_branch_losses(
            protos, segm, coeffs, gt_inds, gt_boxes, gt_masks, gt_labels,
            positive_infos[0].num_total_pos, self.num_classes, self.loss_mask_weight,
            self.max_masks_to_train, self.crop_padding, self.loss_segm_weight,
            self.mask_iou_net, self.loss_mask_iou_weight, self.discard_mask_area,
            self.detach_mask_iou_input)

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, protos: Tensor, segm, results_list: List[InstanceData],
                        batch_img_metas: List[dict], rescale: bool = True, **kwargs):
        cfg = self.test_cfg or {}
        mask_nms = cfg.get('mask_nms', None)
        out = []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            if len(results) == 0:
                res = empty_instances([meta], protos.device, task_type='mask',
                                      instance_results=[results])[0]
                out.append(res)
                continue
            img_hw = tuple(meta['img_shape'][:2])
            dets = dict(rel_bboxes=results.rel_bboxes, labels=results.labels,
                        scores=results.scores, coeffs=results.coeffs)
            res = Y.postprocess(
                protos[i], dets, input_size(meta), img_hw,
                tuple(meta['ori_shape'][:2]) if rescale else img_hw, meta.get('scale_factor'),
                self.mask_iou_net, self.crop_padding, cfg.get('mask_thr', 0.5),
                cfg.get('rescore_bbox', False), cfg.get('integer_boxes', True),
                cfg.get('drop_empty', True), rescale)
            new = InstanceData(**res)
            if mask_nms is not None:
                new = apply_nms_to_results(new, build_nms(mask_nms))
            out.append(new)
        return out

    @staticmethod
    def upsample_masks(probs: Tensor, input_hw, img_hw, size) -> Tensor:
        """Core :func:`insplug.core.prototypes.yolact.upsample_masks`."""
        return Y.upsample_masks(probs, input_hw, img_hw, size)
