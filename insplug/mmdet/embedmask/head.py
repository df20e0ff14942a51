"""EmbedMask head for mmdet 3.x: insplug's faithful FCOS (:class:`FaithfulFCOSHead`, with the
FCOS-official / maskrcnn-benchmark options) plus proposal embeddings / margins and a
pixel-embedding branch, as in the official release (yinghdb/EmbedMask, commit e9d6142). The
maths is in :mod:`insplug.core.embedmask.embedding` and :mod:`insplug.core.fcos`.
"""
import copy

import torch
from mmcv.cnn import ConvModule, Scale
from mmdet.models.utils import unpack_gt_instances
from mmengine.structures import InstanceData
from torch import nn

from insplug.core.embedmask.embedding import (coordinate_embedding, margin_bias,
                                              margins_from_logits)
from insplug.core.embedmask.pipeline import (batch_mask_loss, detection_masks,
                                             fcos_official_detect, gather_rows,
                                             points_in_masks, sample_object_points)
from insplug.core.fcos import fcos_targets, level_point_info
from insplug.mmdet.assigners.center_sampling import gt_mask_tensor
from insplug.mmdet.fcos.head import FaithfulFCOSHead
from insplug.registry import MODELS

_TEST_DEFAULTS = dict(score_thr=0.05, nms_pre=1000, score='product',
                      nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)


def _stride(s):
    return s[0] if isinstance(s, (tuple, list)) else s


@MODELS.register_module()
class EmbedMaskHead(FaithfulFCOSHead):
    """FCOS head whose box tower also predicts a proposal embedding (``embed_dim``) and margins,
    plus a pixel-embedding tower on the finest level (official ``EmbedMaskHead``).

    Official settings (``embed_mask_R50_1x.yaml`` + ``fcos_core/config/defaults.py``): GIoU
    loss with +1 smoothing, centre sampling 1.5, stride-normalised regression, centerness on
    the box tower, tower convs with bias + GN(32); at test ``cls > 0.05``, top 1000 per level
    by ``cls * ctr``, score ``cls * ctr`` (no sqrt), boxes clipped to ``[0, W - 1]`` before a
    class-aware NMS at 0.6 with +1 box areas, 100 per image (kthvalue).

    Args:
        embed_dim: D (2 spatial + D - 2 free dimensions; released 16).
        per_dim_margin: True (released): D margins per proposal, the two spatial ones scaled
            by a learned per-level ``margin_scales``; False: one margin (earlier revision).
        prior_margin: embedding distance of probability 0.5 at initialisation (2.0).
        margin_reduce_factor: the margin conv sees the box tower / 32.
        embed_reduce_factor: the embedding convs see the towers / this (1).
        mask_scale_factor: pixel embeddings are upsampled by this factor (2: stride 4).
        box_padding: < 0 (released -1): mask loss over the whole grid; >= 0: inside the object's
            box enlarged by this fraction plus one cell (earlier revision, 0.1).
        sample_in_mask: positives must also lie on the object's mask (True).
        loss_mask_weight: ``LOSS_MASK_ALPHA`` (0.5).
        mask_thr: ``MASK_TH`` (0.53); the log-probability maps are thresholded at its log.
        test_box_pad: cells added around a detection's box on the grid (2).
        test_cfg: ``score_thr``, ``nms_pre``, ``score`` ('product'), ``nms.iou_threshold``,
            ``max_per_img``.
    """

    def __init__(self, num_classes, in_channels, embed_dim=16, per_dim_margin=True,
                 prior_margin=2.0, margin_reduce_factor=32.0, embed_reduce_factor=1.0,
                 mask_scale_factor=2, box_padding=-1.0, sample_in_mask=True,
                 loss_mask_weight=0.5, mask_thr=0.53, test_box_pad=2, loss_type='giou',
                 **kwargs):
        if embed_dim < 3:
            raise ValueError(f'EmbedMaskHead: `embed_dim` must be >= 3, got {embed_dim}')
        self.embed_dim, self.per_dim_margin, self.prior_margin = (embed_dim, per_dim_margin,
                                                                  prior_margin)
        super().__init__(num_classes, in_channels, loss_type=loss_type, **kwargs)
        self.margin_reduce_factor = margin_reduce_factor
        self.embed_reduce_factor = embed_reduce_factor
        self.mask_scale_factor = mask_scale_factor
        self.box_padding = box_padding
        self.sample_in_mask = sample_in_mask
        self.loss_mask_weight = loss_mask_weight
        self.mask_thr = mask_thr
        self.test_box_pad = test_box_pad
        self._last_targets = None

    @property
    def margin_dim(self):
        return self.embed_dim if self.per_dim_margin else 1

    def _init_layers(self):
        super()._init_layers()
        c, d = self.feat_channels, self.embed_dim
        self.proposal_spatial = nn.Conv2d(c, 2, 3, padding=1)
        self.proposal_other = nn.Conv2d(c, d - 2, 3, padding=1)
        self.conv_margin = nn.Conv2d(c, self.margin_dim, 3, padding=1)
        if self.per_dim_margin:
            self.margin_scales = nn.ModuleList([Scale(1.0) for _ in self.strides])
        self.mask_convs = nn.ModuleList([
            ConvModule(self.in_channels if i == 0 else c, c, 3, padding=1,
                       norm_cfg=self.norm_cfg, bias=self.conv_bias)
            for i in range(self.stacked_convs)])
        self.pixel_spatial = nn.Conv2d(c, 2, 3, padding=1)
        self.pixel_other = nn.Conv2d(c, d - 2, 3, padding=1)
        self.position_scale = Scale(1.0)

    def init_weights(self):
        super().init_weights()
        for m in [self.proposal_spatial, self.proposal_other, self.conv_margin,
                  self.pixel_spatial, self.pixel_other] + [
                      cm.conv for cm in self.mask_convs]:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(self.conv_margin.bias, margin_bias(self.prior_margin))

    # ------------------------------------------------------------------ forward
    def forward(self, x):
        """Per-level cls logits (B, K, h, w), boxes (B, 4, h, w) (stride units in training,
        pixels at test), centerness logits (B, 1, h, w), proposal embeddings (B, D, h, w),
        margins (B, D or 1, h, w); and the pixel embeddings (B, D, h0, w0) of the finest level.
        """
        cls_scores, bbox_preds, ctrs, embeds, margins = [], [], [], [], []
        for lvl, (feat, stride) in enumerate(zip(x, self.strides)):
            s = _stride(stride)
            cls, reg, ctr, reg_feat = self.forward_level(feat, lvl, s)
            cls_scores.append(cls)
            bbox_preds.append(reg)
            ctrs.append(ctr)
            e = reg_feat / self.embed_reduce_factor
            h, w = e.shape[-2:]
            coords = coordinate_embedding(h, w, s, self.position_scale.scale, e)
            embeds.append(torch.cat([self.proposal_spatial(e) + coords,
                                     self.proposal_other(e)], 1))
            raw = self.conv_margin(reg_feat / self.margin_reduce_factor)
            margins.append(margins_from_logits(
                raw, self.margin_scales[lvl].scale if self.per_dim_margin else None))
        m = x[0]
        for conv in self.mask_convs:
            m = conv(m)
        m = m / self.embed_reduce_factor
        coords = coordinate_embedding(m.shape[-2], m.shape[-1], _stride(self.strides[0]),
                                      self.position_scale.scale, m)
        pixel = torch.cat([self.pixel_spatial(m) + coords, self.pixel_other(m)], 1)
        return cls_scores, bbox_preds, ctrs, embeds, margins, pixel

    # ------------------------------------------------------------------ targets
    def _in_mask(self, gt, points):
        """(P, G) bool: the point lies on the object's mask (0 outside the mask's extent)."""
        return points_in_masks(gt_mask_tensor(gt, points.device), points)

    def get_targets(self, points, batch_gt_instances):
        """As :meth:`FaithfulFCOSHead.get_targets`, with the official in-mask rule; keeps the
        per-image ``gt_inds`` for the embedding sampling."""
        strides = [_stride(s) for s in self.strides]
        pts, pstr, rng = level_point_info(points, strides, self.regress_ranges)
        out = []
        for gt in batch_gt_instances:
            extra = None
            if self.sample_in_mask and len(gt) > 0:
                extra = self._in_mask(gt, pts)
            labels, reg, inds = fcos_targets(pts, pstr, rng, gt.bboxes.to(pts.dtype), gt.labels,
                                             self.num_classes, self.center_sample_radius
                                             if self.center_sampling else 0.0,
                                             extra_valid=extra)
            if self.norm_reg_targets:
                reg = reg / pstr[:, None]
            out.append((labels, reg, inds))
        self._last_targets = dict(points=pts, strides=pstr, targets=out)
        return out

    # ------------------------------------------------------------------ training
    def loss(self, x, batch_data_samples):
        outs = self(x)
        gts, gts_ignore, metas = unpack_gt_instances(batch_data_samples)
        return self.loss_by_feat(*outs, batch_gt_instances=gts, batch_img_metas=metas,
                                 batch_gt_instances_ignore=gts_ignore)

    def loss_by_feat(self, cls_scores, bbox_preds, centernesses, embeds, margins, pixel_embed,
                     batch_gt_instances=None, batch_img_metas=None,
                     batch_gt_instances_ignore=None):
        losses = super().loss_by_feat(cls_scores, bbox_preds, centernesses, None,
                                      batch_gt_instances=batch_gt_instances,
                                      batch_img_metas=batch_img_metas,
                                      batch_gt_instances_ignore=batch_gt_instances_ignore)
        losses['loss_mask'] = self.loss_mask_weight * self.mask_loss(
            bbox_preds, embeds, margins, pixel_embed, batch_gt_instances)
        return losses

    def sample_embeddings(self, bbox_preds, embeds, margins, batch_gt_instances):
        """Official embedding sampling from the targets of the last :meth:`get_targets`
        (:func:`insplug.core.embedmask.pipeline.sample_object_points`).

        Returns:
            per image: (G,) long index into all points (-1: object without positives), and
            the (G, D) embeddings and (G, D or 1) margins at those points (rows of -1 objects
            are those of point 0, unused).
        """
        pts, pstr = self._last_targets['points'], self._last_targets['strides']
        out = []
        for i, (gt, (_, _, inds)) in enumerate(zip(batch_gt_instances,
                                                   self._last_targets['targets'])):
            reg = torch.cat([b[i].detach().permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
            point = sample_object_points(pts, reg * pstr[:, None], inds, gt.bboxes)
            safe = point.clamp(min=0)
            out.append((point, gather_rows(embeds, safe, i), gather_rows(margins, safe, i)))
        return out

    def mask_loss(self, bbox_preds, embeds, margins, pixel_embed, batch_gt_instances):
        """Official mask loss (before the ``loss_mask_weight``)."""
        samples = self.sample_embeddings(bbox_preds, embeds, margins, batch_gt_instances)
        embs, mars, masks, boxes = [], [], [], []
        for gt, (point, emb, mar) in zip(batch_gt_instances, samples):
            valid = point >= 0
            embs.append(emb[valid])
            mars.append(mar[valid] if self.per_dim_margin else mar[valid, 0])
            masks.append(gt_mask_tensor(gt, pixel_embed.device)[valid])
            boxes.append(gt.bboxes[valid])
        loss = batch_mask_loss(pixel_embed, embs, mars, masks, boxes, _stride(self.strides[0]),
                               self.mask_scale_factor, self.box_padding)
        # every embedding output takes part in the graph (DDP), as in the official code
        zero = pixel_embed.sum() * 0 + sum(e.sum() * 0 + m.sum() * 0
                                           for e, m in zip(embeds, margins))
        return zero if loss is None else zero + loss

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores, bbox_preds, centernesses, embeds, margins,
                        pixel_embed, batch_img_metas=None, cfg=None, rescale=False,
                        with_nms=True, **kwargs):
        cfg = copy.deepcopy(cfg if cfg is not None else self.test_cfg) or {}
        opts = {k: cfg.get(k, v) for k, v in _TEST_DEFAULTS.items()}
        nms_thr = opts['nms'].get('iou_threshold', 0.6) if with_nms and opts['nms'] else 0.0
        sizes = [c.shape[-2:] for c in cls_scores]
        points = self._points(sizes, bbox_preds[0].dtype, bbox_preds[0].device)
        if self.training and self.norm_reg_targets:  # forward gave stride units: to pixels
            bbox_preds = [b * _stride(s) for b, s in zip(bbox_preds, self.strides)]
        results = []
        for i, meta in enumerate(batch_img_metas):
            in_hw = tuple(meta['img_shape'][:2])
            det = fcos_official_detect(
                [c[i].permute(1, 2, 0).reshape(-1, self.cls_out_channels) for c in cls_scores],
                [b[i].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds],
                [t[i].reshape(-1) for t in centernesses], points, in_hw,
                opts['score_thr'], opts['nms_pre'], opts['score'], nms_thr,
                opts['max_per_img'])
            mar = gather_rows(margins, det['point_inds'], i)
            out_hw = tuple(meta['ori_shape'][:2]) if rescale else in_hw
            masks = detection_masks(
                pixel_embed[i], gather_rows(embeds, det['point_inds'], i),
                mar if self.per_dim_margin else mar[:, 0], det['bboxes'], in_hw, out_hw,
                _stride(self.strides[0]), self.mask_scale_factor, self.test_box_pad,
                self.mask_thr)
            boxes = det['bboxes']
            if rescale:
                boxes = boxes * boxes.new_tensor([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]] * 2)
            results.append(InstanceData(bboxes=boxes, scores=det['scores'],
                                        labels=det['labels'], masks=masks))
        return results
