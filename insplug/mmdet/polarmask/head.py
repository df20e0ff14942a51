"""PolarMask head for mmdet 3.x, as the official release (xieenze/PolarMask, mmdet 1.x) computes
it. The maths is in :mod:`insplug.core.polarmask` (targets, inference) and
:mod:`insplug.core.losses.polar_iou` (losses)."""
from typing import List, Optional

import numpy as np
from mmcv.cnn import ConvModule, Scale
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.utils import multi_apply
from mmengine.structures import InstanceData
from torch import nn

from insplug.core.polarmask.inference import polarmask_predict_single
from insplug.core.polarmask.loss import polarmask_loss_inputs
from insplug.registry import MODELS


def _gt_masks_array(gt_instances) -> np.ndarray:
    """(G, H, W) uint8 masks of ``gt_instances`` (BitmapMasks, PolygonMasks or a tensor)."""
    if 'masks' not in gt_instances:
        raise ValueError('PolarMaskHead needs instance masks: set `with_mask=True` in '
                         'LoadAnnotations of the training pipeline')
    masks = gt_instances.masks
    if hasattr(masks, 'to_ndarray'):
        return masks.to_ndarray().astype(np.uint8)
    return masks.detach().cpu().numpy().astype(np.uint8)


@MODELS.register_module()
class PolarMaskHead(FCOSHead):
    """FCOS towers plus a third (mask) tower predicting ``num_rays`` ray lengths
    (``exp(Scale(conv))``), trained and decoded as the official PolarMask release.

    Layers are those of the release (``PolarMask_Head``): ``cls_convs``/``reg_convs``/
    ``mask_convs`` (GN, no conv bias), ``conv_cls``, ``conv_reg``, ``conv_centerness`` (on the
    cls tower), ``conv_rays`` (official ``polar_mask``, rays in insplug's order: the converter
    permutes them), ``scales`` (``scales_bbox``) and ``scales_mask``.

    Training (official): targets from the largest contour of each mask, its integer centroid as
    sampling centre, legacy inclusive boxes (``box_offset``); focal loss over
    ``num_pos + num_imgs``; box IoU loss with ``+1`` sizes and polar IoU loss, both weighted by
    the polar centerness target and divided by its sum; centerness BCE averaged over positives.
    The normalisers are per process (the release does not average them over GPUs).

    Inference (official): per-level top ``nms_pre`` points by ``max(cls * ctr)``; pairs with
    ``cls > score_thr``; score ``cls * (ctr + centerness_bias)``; per-class NMS with ``+1``
    areas; masks are the integer ray polygons filled by OpenCV in the original image.

    Args:
        num_rays: rays per point (36, at 10 degrees).
        loss_mask: ray loss config (``PolarIoULoss``).
        radius: centre-sampling radius in strides (official 1.5).
        box_offset: subtracted from gt x2, y2 to get the release's inclusive boxes (1.0).
        centerness_bias: added to the predicted centerness in the test score (official 0.5).
    """

    def __init__(self, num_classes, in_channels, num_rays=36,
                 loss_bbox=dict(type='LegacyBoxIoULoss', loss_weight=1.0),
                 loss_mask=dict(type='PolarIoULoss', loss_weight=1.0),
                 radius=1.5, box_offset=1.0, centerness_bias=0.5, **kwargs):
        self.num_rays = num_rays
        super().__init__(num_classes, in_channels, loss_bbox=loss_bbox, **kwargs)
        self.loss_mask = MODELS.build(loss_mask)
        self.radius = radius
        self.box_offset = box_offset
        self.centerness_bias = centerness_bias

    def _init_layers(self):
        super()._init_layers()
        self.mask_convs = nn.ModuleList([
            ConvModule(self.in_channels if i == 0 else self.feat_channels, self.feat_channels, 3,
                       padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                       bias=self.conv_bias) for i in range(self.stacked_convs)])
        self.conv_rays = nn.Conv2d(self.feat_channels, self.num_rays, 3, padding=1)
        self.scales_mask = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def forward(self, x):
        """Returns per-level cls scores, box distances, centerness and ray lengths (B, R, h, w)."""
        cls, box, ctr = multi_apply(self.forward_single, x, self.scales, self.strides)
        rays = [self._forward_rays(f, s) for f, s in zip(x, self.scales_mask)]
        return cls, box, ctr, rays

    def _forward_rays(self, x, scale):
        for conv in self.mask_convs:
            x = conv(x)
        return scale(self.conv_rays(x)).float().exp()

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, cls_scores, bbox_preds, centernesses, ray_preds, batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None):
        """Targets and positives from :func:`insplug.core.polarmask.loss.polarmask_loss_inputs`
        (shared with the detectron2 adapter); the configured loss modules score them."""
        sizes = [c.shape[-2:] for c in cls_scores]
        points = self.prior_generator.grid_priors(sizes, dtype=bbox_preds[0].dtype,
                                                  device=cls_scores[0].device)
        inp = polarmask_loss_inputs(
            cls_scores, bbox_preds, centernesses, ray_preds, points, self.strides,
            self.regress_ranges, [gt.bboxes for gt in batch_gt_instances],
            [gt.labels for gt in batch_gt_instances],
            [_gt_masks_array(gt) if len(gt) else None for gt in batch_gt_instances],
            self.num_classes, self.num_rays, self.radius, self.box_offset)
        losses = dict(loss_cls=self.loss_cls(inp['cls'], inp['labels'],
                                             avg_factor=inp['num_pos'] + inp['num_imgs']))
        if inp['num_pos'] > 0:
            w = inp['ctr_target']
            denom = w.sum()
            losses['loss_bbox'] = self.loss_bbox(inp['box_pred'], inp['box_target'], weight=w,
                                                 avg_factor=denom)
            losses['loss_mask'] = self.loss_mask(inp['ray_pred'], inp['ray_target'], w,
                                                 avg_factor=denom)
            losses['loss_centerness'] = self.loss_centerness(inp['ctr_pred'], w)
        else:
            losses.update(loss_bbox=inp['box'].sum() * 0, loss_mask=inp['ray'].sum() * 0,
                          loss_centerness=inp['ctr'].sum() * 0)
        return losses

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores, bbox_preds, centernesses, ray_preds,
                        batch_img_metas: Optional[List[dict]] = None, cfg=None,
                        rescale: bool = False, with_nms: bool = True, **kwargs):
        cfg = self.test_cfg if cfg is None else cfg
        sizes = [c.shape[-2:] for c in cls_scores]
        points = self.prior_generator.grid_priors(sizes, dtype=bbox_preds[0].dtype,
                                                  device=cls_scores[0].device)
        results = []
        for i, meta in enumerate(batch_img_metas):
            def level(maps, ch):
                return [m[i].permute(1, 2, 0).reshape(-1, ch) for m in maps]
            boxes, scores, labels, masks, _ = polarmask_predict_single(
                level(cls_scores, self.cls_out_channels), level(bbox_preds, 4),
                [c[:, 0] for c in level(centernesses, 1)], level(ray_preds, self.num_rays),
                points, meta['img_shape'],
                scale_factor=meta.get('scale_factor', (1.0, 1.0)) if rescale else (1.0, 1.0),
                out_shape=meta['ori_shape'] if rescale else meta['img_shape'],
                nms_pre=cfg.get('nms_pre', -1), score_thr=cfg.get('score_thr', 0.05),
                iou_thr=cfg.nms.get('iou_threshold', 0.5),
                max_per_img=cfg.get('max_per_img', 100), centerness_bias=self.centerness_bias)
            results.append(InstanceData(bboxes=boxes, scores=scores, labels=labels, masks=masks))
        return results
