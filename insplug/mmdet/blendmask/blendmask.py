"""BlendMask for mmdet 3.x: ``BlendMask`` (detector), ``BlendMaskFCOSHead`` (FCOS + top layer),
``BlendMaskHead`` (bottom module + blender + semantic loss).

The maths is in :mod:`insplug.core.blendmask` and the bottom module is the registered
``ProtoNetEncoder`` (:mod:`insplug.core.layers.protonet`); this file only wires them into mmdet's
single-stage instance-segmentation interface (FCOS assignment from mmdet's CondInst/FCOS heads).
"""
import copy
from typing import List, Optional

import torch
from mmdet.models.dense_heads.base_mask_head import BaseMaskHead
from mmdet.models.dense_heads.condinst_head import CondInstBboxHead
from mmdet.models.detectors.single_stage_instance_seg import SingleStageInstanceSegmentor
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from mmdet.models.utils.misc import empty_instances
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.blendmask import blender as B
from insplug.core.blendmask.semantic_head import SemanticHead
from insplug.mmdet.postprocess.nms import apply_nms_to_results, build_nms
from insplug.registry import MODELS

__all__ = ['BlendMask', 'BlendMaskFCOSHead', 'BlendMaskHead']

_MMCV_NMS_TYPES = ('nms', 'soft_nms', 'nms_rotated')


@MODELS.register_module()
class BlendMask(SingleStageInstanceSegmentor):
    """BlendMask (Chen et al., CVPR 2020): FCOS proposals + top-layer attentions + bottom bases
    blended per instance. Same data flow as mmdet's CondInst/YOLACT detectors."""


@MODELS.register_module()
class BlendMaskFCOSHead(CondInstBboxHead):
    """FCOS head whose box tower also feeds BlendMask's top layer (a conv3x3 predicting
    K x M x M attentions per location, initialised N(0, 0.01)).

    Args:
        num_bases: K (4).
        attn_size: M (14).
        center_sample_by_mask: use the mask centroid for FCOS centre sampling (mmdet's CondInst
            behaviour) instead of the box centre (FCOS / AdelaiDet BlendMask; default).
        Other args: :class:`mmdet.models.dense_heads.FCOSHead`. ``test_cfg.nms`` may also name a
        registered NMS (``BoxNMS``, ``FastNMS``) instead of mmcv's ``nms``.
    """

    def __init__(self, *args, num_bases: int = 4, attn_size: int = 14,
                 center_sample_by_mask: bool = False, **kwargs) -> None:
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.center_sample_by_mask = center_sample_by_mask
        super().__init__(*args, num_params=num_bases * attn_size * attn_size, **kwargs)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.normal_(self.controller.weight, std=0.01)
        nn.init.zeros_(self.controller.bias)

    def _get_targets_single(self, gt_instances: InstanceData, *args, **kwargs):
        if not self.center_sample_by_mask and 'masks' in gt_instances:
            gt_instances = InstanceData(bboxes=gt_instances.bboxes, labels=gt_instances.labels)
        return super()._get_targets_single(gt_instances, *args, **kwargs)

    def _bbox_post_process(self, results: InstanceData, cfg, rescale: bool = False,
                           with_nms: bool = True, img_meta: Optional[dict] = None):
        nms_cfg = cfg.get('nms', None)
        if nms_cfg is None or nms_cfg.get('type', 'nms') in _MMCV_NMS_TYPES:
            return super()._bbox_post_process(results, cfg, rescale, with_nms, img_meta)
        cfg = copy.deepcopy(cfg)
        cfg.nms = None
        results = super()._bbox_post_process(results, cfg, rescale, False, img_meta)
        if with_nms and len(results) > 0:
            results = apply_nms_to_results(results, nms_cfg)[:cfg.max_per_img]
        return results


@MODELS.register_module()
class BlendMaskHead(BaseMaskHead):
    """Bottom module (bases), blender and losses of BlendMask.

    Args:
        num_classes: thing classes (the semantic head predicts num_classes + 1).
        bottom_module: config of the bases encoder (default: ``ProtoNetEncoder`` over P3-P5,
            128 channels, BN, K = 4 bases at stride 4); any registered module mapping the FPN
            tuple to (B, K, H, W) works.
        num_bases: K, must match the bottom module and the box head's ``num_bases``.
        attn_size: M (14). bottom_resolution: R (56). bases_stride: stride of the bases (4).
        pooler_sampling_ratio: RoIAlign samples per bin (1).
        loss_mask_weight: instance (blender) loss weight (1.0).
        semantic_loss_weight: auxiliary semantic loss weight (0.3); 0 disables the head.
        semantic_in_channels / semantic_feat_channels / semantic_stride: semantic head on the
            first FPN level (P3, stride 8), 128 hidden channels.
        test_cfg: ``mask_thr`` (0.5); optional ``mask_nms`` (e.g. ``dict(type='MatrixNMS')``)
            applied after mask assembly.
    """

    def __init__(self, num_classes: int, bottom_module: Optional[dict] = None,
                 num_bases: int = 4, attn_size: int = 14, bottom_resolution: int = 56,
                 bases_stride: int = 4, pooler_sampling_ratio: int = 1,
                 loss_mask_weight: float = 1.0, semantic_loss_weight: float = 0.3,
                 semantic_in_channels: int = 256, semantic_feat_channels: int = 128,
                 semantic_stride: int = 8, train_cfg=None, test_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if bottom_module is None:
            bottom_module = dict(type='ProtoNetEncoder', in_channels=256, feat_channels=128,
                                 num_protos=num_bases, in_levels=(0, 1, 2), level_convs=True,
                                 norm='BN', proto_activation=None, init='kaiming')
        self.bottom_module = MODELS.build(bottom_module)
        out_bases = getattr(self.bottom_module, 'num_protos', num_bases)
        if out_bases != num_bases:
            raise ValueError(f'bottom_module produces {out_bases} bases but num_bases='
                             f'{num_bases}: set both (and the box head\'s num_bases) equal')
        self.num_classes = num_classes
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.bottom_resolution = bottom_resolution
        self.bases_stride = bases_stride
        self.pooler_sampling_ratio = pooler_sampling_ratio
        self.loss_mask_weight = loss_mask_weight
        self.semantic_loss_weight = semantic_loss_weight
        self.semantic_stride = semantic_stride
        self.semantic_head = SemanticHead(semantic_in_channels, num_classes,
                                          semantic_feat_channels) \
            if semantic_loss_weight > 0 else None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    # ------------------------------------------------------------------ forward
    def forward(self, x, positive_infos=None):
        bases = self.bottom_module(x)
        sem_logits = self.semantic_head(x[0]) \
            if self.semantic_head is not None and self.training else None
        return bases, sem_logits

    def _pool_and_blend(self, bases: Tensor, boxes: Tensor, batch_inds: Tensor,
                        attns: Tensor) -> Tensor:
        rois = B.pool_bases(bases, boxes, batch_inds, self.bottom_resolution,
                            1.0 / self.bases_stride, self.pooler_sampling_ratio)
        return B.blend(rois, attns, self.attn_size)

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, bases: Tensor, sem_logits: Optional[Tensor],
                     batch_gt_instances: List[InstanceData], batch_img_metas: List[dict],
                     positive_infos: List[InstanceData], **kwargs) -> dict:
        if positive_infos is None:
            raise ValueError('BlendMaskHead needs positive_infos from its box head '
                             '(use bbox_head=dict(type=\'BlendMaskFCOSHead\', ...))')
        device = bases.device
        boxes, batch_inds, attns, points, targets = [], [], [], [], []
        for i, (gt, pos) in enumerate(zip(batch_gt_instances, positive_infos)):
            gt_inds = pos.pos_assigned_gt_inds
            if gt_inds.numel() == 0:
                continue
            gt_masks = gt.masks.to_tensor(dtype=torch.bool, device=device)
            # crop every GT once, then gather per positive location (GT boxes as proposals)
            crops = B.crop_and_resize_masks(gt_masks, gt.bboxes, self.bottom_resolution)
            boxes.append(gt.bboxes[gt_inds])
            batch_inds.append(torch.full_like(gt_inds, i))
            attns.append(pos.param_preds)
            points.append(pos.points)
            targets.append(crops[gt_inds])
        losses = {}
        if boxes:
            boxes, points = torch.cat(boxes), torch.cat(points)
            ctr = B.centerness_targets(points, boxes)
            denorm = max(reduce_mean(ctr.sum().detach()).item(), 1e-6)
            logits = self._pool_and_blend(bases, boxes, torch.cat(batch_inds), torch.cat(attns))
            loss_mask = B.blender_mask_loss(logits, torch.cat(targets), ctr, denorm)
        else:  # no positive location in the batch: keep the graph connected
            loss_mask = bases.sum() * 0 + sum(p.param_preds.sum() * 0 for p in positive_infos)
        losses['loss_mask'] = loss_mask * self.loss_mask_weight
        if sem_logits is not None:
            h, w = sem_logits.shape[-2:]
            sem_targets = torch.stack([
                B.semantic_targets(gt.masks.to_tensor(dtype=torch.bool, device=device),
                                   gt.labels, (h, w), self.semantic_stride)
                for gt in batch_gt_instances])
            losses['loss_basis_sem'] = B.semantic_loss(sem_logits, sem_targets,
                                                       self.semantic_loss_weight)
        return losses

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, bases: Tensor, sem_logits, results_list: List[InstanceData],
                        batch_img_metas: List[dict], rescale: bool = True, **kwargs):
        cfg = self.test_cfg
        mask_thr = cfg.get('mask_thr', 0.5) if cfg is not None else 0.5
        mask_nms = cfg.get('mask_nms', None) if cfg is not None else None
        boxes = torch.cat([r.bboxes for r in results_list])
        batch_inds = torch.cat([torch.full((len(r),), i, dtype=torch.long, device=bases.device)
                                for i, r in enumerate(results_list)])
        attns = torch.cat([r.param_preds for r in results_list])
        probs = self._pool_and_blend(bases, boxes, batch_inds, attns).sigmoid() \
            if boxes.numel() else bases.new_zeros((0, self.bottom_resolution,
                                                   self.bottom_resolution))
        out = []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            results = InstanceData(bboxes=results.bboxes, scores=results.scores,
                                   labels=results.labels)
            if len(results) == 0:
                out.append(empty_instances([meta], bases.device, task_type='mask',
                                           instance_results=[results])[0])
                continue
            img_probs = probs[batch_inds == i]
            bboxes = results.bboxes
            if rescale:
                scale = bboxes.new_tensor(meta['scale_factor']).repeat(1, 2)
                bboxes = bboxes / scale
                h, w = meta['ori_shape'][:2]
            else:
                h, w = meta['img_shape'][:2]
            masks, _ = _do_paste_mask(img_probs[:, None], bboxes, h, w, skip_empty=False)
            results.bboxes = bboxes
            results.masks = masks > mask_thr
            if mask_nms is not None:
                results = apply_nms_to_results(results, build_nms(mask_nms))
            out.append(results)
        return out
