"""PolarMask head for mmdet 3.x: FCOS plus a ray-length branch; the maths is in
:mod:`insplug.core.polarmask`, the assignment in :mod:`insplug.core.assigners`."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, Scale
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.utils import multi_apply
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import nn

from insplug.core.assigners.dense_select import distance_to_boxes, select_candidates
from insplug.core.polarmask.inference import polar_masks
from insplug.core.polarmask.targets import polar_centerness, polar_ray_targets
from insplug.core.postprocess.nms import box_nms
from insplug.mmdet.assigners.center_sampling import (assign_batch, gt_mask_tensor,
                                                     level_priors)
from insplug.registry import MODELS, TASK_UTILS


@MODELS.register_module()
class PolarMaskHead(FCOSHead):
    """FCOS head with a third tower predicting ``num_rays`` ray lengths (exp of a scaled conv).

    The centerness branch learns the polar centerness ``sqrt(min d / max d)`` of the ray
    targets, which also weights the box IoU loss and the polar IoU loss. Positives come from
    centre sampling around the mask mass centre (``assigner``).

    Args:
        num_rays: rays per point (36, at 10 degrees).
        loss_mask: ray loss config (``PolarIoULoss``).
        assigner: point assigner config (``CenterSamplingAssigner``).
        centerness_bias: added to the predicted centerness before it multiplies the class
            score at test time (official: 0.5, as polar centerness is small).
    """

    def __init__(self, num_classes, in_channels, num_rays=36,
                 loss_mask=dict(type='PolarIoULoss', loss_weight=1.0),
                 assigner=dict(type='CenterSamplingAssigner', radius=1.5, center='mask'),
                 centerness_bias=0.5, **kwargs):
        self.num_rays = num_rays
        super().__init__(num_classes, in_channels, center_sampling=True, **kwargs)
        self.loss_mask = MODELS.build(loss_mask)
        self.assigner = TASK_UTILS.build(assigner)
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
    def _targets(self, points, batch_gt_instances, device):
        priors = level_priors(points, self.strides, self.regress_ranges)
        indices = assign_batch(self.assigner, priors, batch_gt_instances)
        labels, boxes, rays = [], [], []
        for gt, index in zip(batch_gt_instances, indices):
            pos = index >= 0
            lab = index.new_full(index.shape, self.num_classes)
            lab[pos] = gt.labels[index[pos]]
            box = priors.priors.new_zeros((len(index), 4))
            ray = priors.priors.new_ones((len(index), self.num_rays))
            if pos.any():
                p, g = priors.priors[pos], index[pos]
                b = gt.bboxes[g].to(p)
                box[pos] = torch.cat((p - b[:, :2], b[:, 2:] - p), 1)
                ray[pos] = polar_ray_targets(p, g, gt_mask_tensor(gt, device), self.num_rays)
            labels.append(lab)
            boxes.append(box)
            rays.append(ray)
        return torch.cat(labels), torch.cat(boxes), torch.cat(rays), priors.priors

    def loss_by_feat(self, cls_scores, bbox_preds, centernesses, ray_preds, batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None):
        device = cls_scores[0].device
        sizes = [c.shape[-2:] for c in cls_scores]
        points = self.prior_generator.grid_priors(sizes, dtype=bbox_preds[0].dtype,
                                                  device=device)
        # flatten image-major: image 0 all levels, image 1 all levels, ...
        def flat(maps, ch):
            return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, ch) for m in maps],
                             1).reshape(-1, ch)
        cls = flat(cls_scores, self.cls_out_channels)
        box = flat(bbox_preds, 4)
        ctr = flat(centernesses, 1)[:, 0]
        ray = flat(ray_preds, self.num_rays)
        labels, box_t, ray_t, pts = self._targets(points, batch_gt_instances, device)
        pts = pts.repeat(len(batch_gt_instances), 1)
        pos = ((labels >= 0) & (labels < self.num_classes)).nonzero().reshape(-1)
        num_pos = max(reduce_mean(torch.tensor(float(len(pos)), device=device)), 1.0)
        losses = dict(loss_cls=self.loss_cls(cls, labels, avg_factor=num_pos))
        if len(pos) > 0:
            ctr_t = polar_centerness(ray_t[pos])
            denom = max(reduce_mean(ctr_t.sum().detach()), 1e-6)
            losses['loss_bbox'] = self.loss_bbox(
                self.bbox_coder.decode(pts[pos], box[pos]),
                self.bbox_coder.decode(pts[pos], box_t[pos]), weight=ctr_t, avg_factor=denom)
            losses['loss_mask'] = self.loss_mask(ray[pos], ray_t[pos], ctr_t, avg_factor=denom)
            losses['loss_centerness'] = self.loss_centerness(ctr[pos], ctr_t, avg_factor=num_pos)
        else:
            zero = box.sum() * 0 + ray.sum() * 0
            losses.update(loss_bbox=zero, loss_mask=zero, loss_centerness=ctr.sum() * 0)
        return losses

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores, bbox_preds, centernesses, ray_preds,
                        batch_img_metas: Optional[List[dict]] = None, cfg=None,
                        rescale: bool = False, with_nms: bool = True, **kwargs):
        cfg = self.test_cfg if cfg is None else cfg
        sizes = [c.shape[-2:] for c in cls_scores]
        points = torch.cat(self.prior_generator.grid_priors(
            sizes, dtype=bbox_preds[0].dtype, device=cls_scores[0].device))
        level_sizes = [s[0] * s[1] for s in sizes]
        results = []
        for i, meta in enumerate(batch_img_metas):
            def flat(maps, ch):
                return torch.cat([m[i].permute(1, 2, 0).reshape(-1, ch) for m in maps])
            probs = flat(cls_scores, self.cls_out_channels).sigmoid()
            ctr = flat(centernesses, 1)[:, 0].sigmoid()
            idx, labels, scores = select_candidates(
                probs, ctr + self.centerness_bias, level_sizes, cfg.get('nms_pre', -1),
                cfg.get('score_thr', 0.05))
            boxes = distance_to_boxes(points[idx], flat(bbox_preds, 4)[idx], meta['img_shape'])
            keep, scores = box_nms(scores, labels, boxes=boxes,
                                   iou_thr=cfg.nms.get('iou_threshold', 0.5),
                                   max_num=cfg.get('max_per_img', 100))
            idx, boxes, labels = idx[keep], boxes[keep], labels[keep]
            masks = polar_masks(points[idx], flat(ray_preds, self.num_rays)[idx],
                                *meta['img_shape'][:2])
            results.append(self._rescale(boxes, masks, scores, labels, meta, rescale))
        return results

    @staticmethod
    def _rescale(boxes, masks, scores, labels, meta, rescale):
        """Boxes and masks from the network input to the original image size."""
        if rescale:
            sx, sy = meta['scale_factor'][:2]
            boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
            h, w = meta['ori_shape'][:2]
            if masks.shape[-2:] == (h, w):
                pass
            elif masks.shape[0] > 0:
                masks = F.interpolate(masks[:, None].float(), size=(h, w), mode='bilinear',
                                      align_corners=False)[:, 0] > 0.5
            else:
                masks = masks.new_zeros((0, h, w))
        return InstanceData(bboxes=boxes, scores=scores, labels=labels, masks=masks)
