"""EmbedMask head for mmdet 3.x: FCOS plus proposal embeddings/margins and a pixel-embedding
branch; the maths is in :mod:`insplug.core.embedmask.embedding`."""
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, Scale
from mmdet.models.dense_heads.anchor_free_head import AnchorFreeHead
from mmdet.models.utils import multi_apply
from mmengine.structures import InstanceData
from torch import nn

from insplug.core.assigners.center_sampling import center_sampling_assign
from insplug.core.assigners.dense_select import distance_to_boxes, select_candidates
from insplug.core.embedmask.embedding import (box_region, embed_mask_loss, embedding_distance,
                                              group_means, margin_bias, select_mask_samples,
                                              smooth_loss)
from insplug.core.postprocess.nms import box_nms
from insplug.mmdet.assigners.center_sampling import gt_mask_tensor
from insplug.mmdet.assigners.fcos_head import CenterSamplingFCOSHead
from insplug.registry import MODELS


@MODELS.register_module()
class EmbedMaskHead(CenterSamplingFCOSHead):
    """FCOS head whose regression tower also predicts a proposal embedding (``embed_dim``) and
    margin, plus a pixel-embedding tower on the finest level.

    Args:
        embed_dim: D (2 spatial + D - 2 free dimensions).
        margin_dim: 1 (one margin per proposal, official code) or D.
        prior_margin: embedding distance of probability 0.5 at initialisation (2.0).
        mask_scale_factor: pixel embeddings are upsampled by this factor (2: stride 4).
        box_padding: relative padding of the box region of the mask loss (0.1).
        sample_pos_iou_thr: predicted-box IoU of the points that sample an object (0.5).
        sample_in_mask: positives must also lie on the object's mask.
        loss_mask_weight, loss_smooth_weight: 0.5 and 0.1.
        mask_thr: test-time threshold of the probabilities (0.53).
    """

    def __init__(self, num_classes, in_channels, embed_dim=16, margin_dim=1, prior_margin=2.0,
                 mask_scale_factor=2, box_padding=0.1, sample_pos_iou_thr=0.5,
                 sample_in_mask=True, loss_mask_weight=0.5, loss_smooth_weight=0.1,
                 mask_thr=0.53, **kwargs):
        if embed_dim < 3:
            raise ValueError(f'EmbedMaskHead: `embed_dim` must be >= 3, got {embed_dim}')
        self.embed_dim, self.margin_dim, self.prior_margin = embed_dim, margin_dim, prior_margin
        super().__init__(num_classes, in_channels, **kwargs)
        self.mask_scale_factor = mask_scale_factor
        self.box_padding = box_padding
        self.sample_pos_iou_thr = sample_pos_iou_thr
        self.sample_in_mask = sample_in_mask
        self.loss_mask_weight = loss_mask_weight
        self.loss_smooth_weight = loss_smooth_weight
        self.mask_thr = mask_thr

    def _init_layers(self):
        super()._init_layers()
        c, d = self.feat_channels, self.embed_dim
        self.proposal_spatial = nn.Conv2d(c, 2, 3, padding=1)
        self.proposal_other = nn.Conv2d(c, d - 2, 3, padding=1)
        self.conv_margin = nn.Conv2d(c, self.margin_dim, 3, padding=1)
        self.mask_convs = nn.ModuleList([
            ConvModule(self.in_channels if i == 0 else c, c, 3, padding=1,
                       norm_cfg=self.norm_cfg, bias=self.conv_bias)
            for i in range(self.stacked_convs)])
        self.pixel_spatial = nn.Conv2d(c, 2, 3, padding=1)
        self.pixel_other = nn.Conv2d(c, d - 2, 3, padding=1)
        self.position_scale = Scale(1.0)

    def init_weights(self):
        super().init_weights()
        nn.init.normal_(self.conv_margin.weight, std=0.01)
        nn.init.constant_(self.conv_margin.bias, margin_bias(self.prior_margin))

    def _coords(self, x, stride):
        """(1, 2, h, w) xy of the feature cells in image pixels, scaled by the learned factor."""
        h, w = x.shape[-2:]
        ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) * stride
        xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) * stride
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), 0)[None]
        return self.position_scale(grid) / 100.0

    def forward(self, x):
        """Per-level cls, box, centerness, proposal embeddings (B, D, h, w) and margins
        (B, margin_dim, h, w), and the pixel embeddings (B, D, H0, W0) of the finest level."""
        cls, box, ctr, emb, mar = multi_apply(self.forward_single, x, self.scales, self.strides)
        m = x[0]
        for conv in self.mask_convs:
            m = conv(m)
        stride0 = self.strides[0][0] if isinstance(self.strides[0], tuple) else self.strides[0]
        pixel = torch.cat([self.pixel_spatial(m) + self._coords(m, stride0),
                           self.pixel_other(m)], 1)
        return cls, box, ctr, emb, mar, pixel

    def forward_single(self, x, scale, stride):
        cls_score, bbox_pred, cls_feat, reg_feat = AnchorFreeHead.forward_single(self, x)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        bbox_pred = scale(bbox_pred).float()
        if self.norm_on_bbox:
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * stride
        else:
            bbox_pred = bbox_pred.exp()
        s = stride[0] if isinstance(stride, tuple) else stride
        embed = torch.cat([self.proposal_spatial(reg_feat) + self._coords(reg_feat, s),
                           self.proposal_other(reg_feat)], 1)
        margin = torch.exp(self.conv_margin(reg_feat / 32))
        return cls_score, bbox_pred, centerness, embed, margin

    # ------------------------------------------------------------------ assignment
    def _get_targets_single(self, gt_instances, points, regress_ranges, num_points_per_lvl):
        index = self._assign(gt_instances, points, regress_ranges, num_points_per_lvl)
        labels = gt_instances.labels.new_full((points.shape[0],), self.num_classes)
        targets = points.new_zeros((points.shape[0], 4))
        pos = index >= 0
        if pos.any():
            labels[pos] = gt_instances.labels[index[pos]]
            b, p = gt_instances.bboxes[index[pos]], points[pos]
            targets[pos] = torch.cat((p - b[:, :2], b[:, 2:] - p), 1)
        return labels, targets

    def _assign(self, gt_instances, points, regress_ranges, num_points_per_lvl):
        strides = [s[0] if isinstance(s, (tuple, list)) else s for s in self.strides]
        point_strides = torch.cat([points.new_full((n,), float(s))
                                   for n, s in zip(num_points_per_lvl, strides)])
        extra = None
        if self.sample_in_mask and len(gt_instances) > 0:
            masks = gt_mask_tensor(gt_instances, points.device)
            h, w = masks.shape[-2:]
            px = points[:, 0].long().clamp(0, w - 1)
            py = points[:, 1].long().clamp(0, h - 1)
            inside = (points[:, 0] < w) & (points[:, 1] < h)
            extra = masks[:, py, px].t() & inside[:, None]  # (P, G)
        radius = self.center_sample_radius if self.center_sampling else 0.0
        return center_sampling_assign(points, point_strides, regress_ranges,
                                      gt_instances.bboxes, None, radius, extra)

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, cls_scores, bbox_preds, centernesses, embeds, margins, pixel_embed,
                     batch_gt_instances, batch_img_metas, batch_gt_instances_ignore=None):
        losses = super().loss_by_feat(cls_scores, bbox_preds, centernesses, batch_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        sizes = [c.shape[-2:] for c in cls_scores]
        level_points = self.prior_generator.grid_priors(sizes, dtype=bbox_preds[0].dtype,
                                                        device=bbox_preds[0].device)
        points = torch.cat(level_points)
        num_per_lvl = [len(p) for p in level_points]
        ranges = torch.cat([p.new_tensor(r)[None].expand(len(p), 2)
                            for p, r in zip(level_points, self.regress_ranges)])
        strides = torch.cat([p.new_full((len(p), 1), float(s[0] if isinstance(s, tuple) else s))
                             for p, s in zip(level_points, self.strides)])
        num_imgs = cls_scores[0].shape[0]

        def flat(maps, i):
            return torch.cat([m[i].permute(1, 2, 0).reshape(-1, m.shape[1]) for m in maps])

        pixel = F.interpolate(pixel_embed, scale_factor=self.mask_scale_factor, mode='bilinear',
                              align_corners=False)
        grid_h, grid_w = pixel.shape[-2:]
        grid_stride = float(strides[0]) / self.mask_scale_factor
        samples, groups, distances, targets, valids, image_of_obj = [], [], [], [], [], []
        offset = 0
        for i, gt in enumerate(batch_gt_instances):
            index = self._assign(gt, points, ranges, num_per_lvl)
            pos = (index >= 0).nonzero(as_tuple=True)[0]
            if len(pos) == 0:
                continue
            dist = bbox_preds_to_distances(bbox_preds, i)[pos]
            if self.norm_on_bbox:
                dist = dist * strides[pos]
            pred_boxes = distance_to_boxes(points[pos], dist.detach())
            gt_boxes = gt.bboxes.to(pred_boxes)
            keep = select_mask_samples(pred_boxes, gt_boxes, index[pos], len(gt),
                                       self.sample_pos_iou_thr)
            pos, obj = pos[keep], index[pos][keep]
            values = torch.cat([flat(embeds, i)[pos], flat(margins, i)[pos]], 1)
            samples.append(values)
            groups.append(obj + offset)
            present = torch.unique(obj)
            means = group_means(values, obj, len(gt))[present]
            distances.append(embedding_distance(pixel[i], means[:, :self.embed_dim],
                                                means[:, self.embed_dim:].squeeze(1)
                                                if self.margin_dim == 1 else
                                                means[:, self.embed_dim:]))
            masks = gt_mask_tensor(gt, pixel.device)[present].float()
            targets.append(resample_masks(masks, grid_h, grid_w, grid_stride))
            valids.append(box_region(gt_boxes[present] / grid_stride, grid_h, grid_w,
                                     pad=self.box_padding))
            image_of_obj.append(torch.full((len(present),), i, dtype=torch.long,
                                           device=pixel.device))
            offset += len(gt)
        if samples:
            group = torch.cat(groups)
            used, group = torch.unique(group, return_inverse=True)
            obj_image = torch.cat(image_of_obj)
            losses['loss_mask'] = self.loss_mask_weight * embed_mask_loss(
                torch.cat(distances), torch.cat(targets), torch.cat(valids), obj_image, num_imgs)
            losses['loss_smooth'] = self.loss_smooth_weight * smooth_loss(
                torch.cat(samples), group, obj_image, len(used), num_imgs)
        else:
            zero = pixel.sum() * 0 + sum(e.sum() + m.sum() for e, m in zip(embeds, margins)) * 0
            losses['loss_mask'] = zero
            losses['loss_smooth'] = zero
        return losses

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores, bbox_preds, centernesses, embeds, margins, pixel_embed,
                        batch_img_metas=None, cfg=None, rescale=False, with_nms=True, **kwargs):
        cfg = self.test_cfg if cfg is None else cfg
        sizes = [c.shape[-2:] for c in cls_scores]
        points = torch.cat(self.prior_generator.grid_priors(
            sizes, dtype=bbox_preds[0].dtype, device=cls_scores[0].device))
        level_sizes = [s[0] * s[1] for s in sizes]
        pixel = F.interpolate(pixel_embed, scale_factor=self.mask_scale_factor, mode='bilinear',
                              align_corners=False)
        stride0 = self.strides[0][0] if isinstance(self.strides[0], tuple) else self.strides[0]
        grid_stride = stride0 / self.mask_scale_factor
        results = []
        for i, meta in enumerate(batch_img_metas):
            def flat(maps, ch):
                return torch.cat([m[i].permute(1, 2, 0).reshape(-1, ch) for m in maps])
            probs = flat(cls_scores, self.cls_out_channels).sigmoid()
            ctr = flat(centernesses, 1)[:, 0].sigmoid()
            idx, labels, scores = select_candidates(probs, ctr, level_sizes,
                                                    cfg.get('nms_pre', -1),
                                                    cfg.get('score_thr', 0.05))
            boxes = distance_to_boxes(points[idx], flat(bbox_preds, 4)[idx], meta['img_shape'])
            keep, scores = box_nms(scores, labels, boxes=boxes,
                                   iou_thr=cfg.nms.get('iou_threshold', 0.6),
                                   max_num=cfg.get('max_per_img', 100))
            idx, boxes, labels = idx[keep], boxes[keep], labels[keep]
            emb = flat(embeds, self.embed_dim)[idx]
            mar = flat(margins, self.margin_dim)[idx]
            mar = mar[:, 0] if self.margin_dim == 1 else mar
            prob = torch.exp(-embedding_distance(pixel[i], emb, mar))
            region = box_region(boxes / grid_stride, *prob.shape[-2:], pad_pixels=2.0)
            prob = prob * region
            h, w = meta['img_shape'][:2]
            if len(idx):
                prob = F.interpolate(prob[:, None], scale_factor=grid_stride, mode='bilinear',
                                     align_corners=False)[:, 0, :h, :w]
            else:
                prob = prob.new_zeros((0, h, w))
            results.append(self._to_instances(boxes, prob, scores, labels, meta, rescale))
        return results

    def _to_instances(self, boxes, prob, scores, labels, meta, rescale):
        if rescale:
            sx, sy = meta['scale_factor'][:2]
            boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
            h, w = meta['ori_shape'][:2]
            if prob.shape[-2:] != (h, w):
                prob = F.interpolate(prob[:, None], size=(h, w), mode='bilinear',
                                     align_corners=False)[:, 0] if len(prob) else \
                    prob.new_zeros((0, h, w))
        return InstanceData(bboxes=boxes, scores=scores, labels=labels,
                            masks=prob > self.mask_thr)


def bbox_preds_to_distances(bbox_preds, i):
    """(P, 4) box distances of image ``i`` over all levels, in the head's units."""
    return torch.cat([b[i].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])


def resample_masks(masks, height, width, stride):
    """(G, H_img, W_img) masks -> (G, height, width) {0, 1} on a grid of the given stride
    (area average of each cell >= 0.5; the image is zero-padded to the grid)."""
    g, h, w = masks.shape
    padded = masks.new_zeros((g, int(height * stride), int(width * stride)))
    hh, ww = min(h, padded.shape[1]), min(w, padded.shape[2])
    padded[:, :hh, :ww] = masks[:, :hh, :ww]
    return (F.adaptive_avg_pool2d(padded[:, None], (height, width))[:, 0] >= 0.5).float()
