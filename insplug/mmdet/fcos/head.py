"""``FaithfulFCOSHead``: mmdet's FCOSHead layers with the official FCOS semantics.

The maths (targets, +1 IoU losses, candidate selection, sqrt score, NMS) is in
:mod:`insplug.core.fcos`; this class only wires it into mmdet's dense-head interface. See that
module's docstring for the options and the per-release settings.
"""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.fcos import (fcos_locations, fcos_losses, fcos_predict_single, fcos_targets,
                               level_point_info, regress_ranges_from_sizes, rescale_clip_boxes)
from insplug.mmdet.postprocess.nms import apply_nms_to_results
from insplug.registry import MODELS

__all__ = ['FaithfulFCOSHead']

_TEST_DEFAULTS = dict(score_thr=0.05, nms_pre=1000, thresh_with_ctr=False,
                      candidate_mode='threshold_topk', score='sqrt',
                      nms=dict(type='nms', iou_threshold=0.6), max_per_img=100,
                      clip_before_nms=False, clip_offset=1)


@MODELS.register_module()
class FaithfulFCOSHead(FCOSHead):
    """FCOS head computing what AdelaiDet / FCOS-official / centermask2 / PolarMask compute.

    Layers are mmdet's (``cls_convs``, ``reg_convs``, ``conv_cls``, ``conv_reg``,
    ``conv_centerness``, ``scales``), so mmdet-layout checkpoints load; tower convs carry a bias
    (``conv_bias=True`` default) like every official FCOS. Initialisation is the official one
    (all convs N(0, 0.01), bias 0, class bias from prior 0.01; mmdet's default init_cfg).

    Args:
        num_classes, in_channels, feat_channels, stacked_convs, strides, norm_cfg, init_cfg:
            as mmdet's FCOSHead (``norm_cfg`` GN(32) default; None for no norm).
        sizes_of_interest: ``SIZES_OF_INTEREST`` (64, 128, 256, 512); ignored when
            ``regress_ranges`` is given.
        regress_ranges: explicit per-level (lo, hi) ranges.
        center_sample_radius: ``POS_RADIUS`` (1.5); <= 0 disables centre sampling.
        use_scale: per-level learnable ``Scale`` on the regression (``USE_SCALE``; True in
            AdelaiDet's default and FCOS-official, **False in BlendMask**).
        norm_reg_targets: regression targets divided by the stride, prediction ``relu(x)``
            (True: AdelaiDet, centermask2, FCOS-official ``NORM_REG_TARGETS``); False:
            prediction ``exp(x)`` in pixels (original FCOS, PolarMask).
        centerness_on_reg: centerness branch on the box tower (True; original FCOS: False).
        loss_type: 'giou' (AdelaiDet, centermask2), 'iou' (FCOS-official, PolarMask),
            'linear_iou'. iou_smooth: +1 smoothing of the IoU (1.0).
        box_quality: 'ctrness' or 'iou'. cls_normalizer: 'fg' or 'all'.
        focal_alpha, focal_gamma, loss_weight_cls: focal loss settings (0.25, 2.0, 1.0).
        top_channels: >0 adds ``top_layer``, a conv3x3 on the box tower predicting per-location
            features (BlendMask's attentions, K*M*M); they come back as ``param_preds`` in
            the positive infos and in the predictions.
        test_cfg: ``score_thr`` (0.05), ``nms_pre`` (1000), ``thresh_with_ctr`` (False;
            BlendMask True), ``candidate_mode`` ('threshold_topk' | 'point_topk'),
            ``score`` ('sqrt' | 'product' | 'cls'), ``nms=dict(type='nms', iou_threshold=0.6)`` (class-aware torchvision NMS + kthvalue
            top-k, official) or a registered insplug NMS (``BoxNMS``, ``FastNMS``, ...),
            ``max_per_img`` (100), ``clip_before_nms`` (False; FCOS-official / mmdet 1.x True,
            to ``img_shape - clip_offset``). Unless asked, boxes are not clipped before a
            mask head (AdelaiDet, centermask2); a detector
            without mask head (``rescale=True``) gets detectron2's scale + clip + drop-empty.
            ``predict_by_feat`` also works in training mode (proposals for a second stage, as
            centermask2 makes them; pass the training thresholds as ``cfg``).
    """

    def __init__(self, num_classes: int, in_channels: int,
                 sizes_of_interest: Sequence[float] = (64, 128, 256, 512),
                 regress_ranges: Optional[Sequence[Tuple[float, float]]] = None,
                 center_sample_radius: float = 1.5, use_scale: bool = True,
                 norm_reg_targets: bool = True, centerness_on_reg: bool = True,
                 loss_type: str = 'giou', iou_smooth: float = 1.0,
                 box_quality: str = 'ctrness', cls_normalizer: str = 'fg',
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 loss_weight_cls: float = 1.0, top_channels: int = 0,
                 norm_cfg: Optional[dict] = dict(type='GN', num_groups=32, requires_grad=True),
                 conv_bias: bool = True, **kwargs) -> None:
        self.top_channels = top_channels
        self.use_scale = use_scale
        if regress_ranges is None:
            strides = kwargs.get('strides', (8, 16, 32, 64, 128))
            regress_ranges = regress_ranges_from_sizes(sizes_of_interest)
            if len(regress_ranges) != len(strides):
                raise ValueError(f'{len(sizes_of_interest)} sizes_of_interest give '
                                 f'{len(regress_ranges)} levels, but there are '
                                 f'{len(strides)} strides')
        super().__init__(num_classes, in_channels, regress_ranges=tuple(map(tuple, regress_ranges)),
                         center_sampling=center_sample_radius > 0,
                         center_sample_radius=center_sample_radius,
                         norm_on_bbox=norm_reg_targets, centerness_on_reg=centerness_on_reg,
                         norm_cfg=norm_cfg, conv_bias=conv_bias, **kwargs)
        self.norm_reg_targets = norm_reg_targets
        self.loss_opts = dict(loss_type=loss_type, iou_smooth=iou_smooth,
                              box_quality=box_quality, cls_normalizer=cls_normalizer,
                              focal_alpha=focal_alpha, focal_gamma=focal_gamma,
                              loss_weight_cls=loss_weight_cls)
        self._raw_positive_infos = {}

    def _init_layers(self) -> None:
        super()._init_layers()
        if not self.use_scale:
            self.scales = None
        if self.top_channels > 0:
            self.top_layer = nn.Conv2d(self.feat_channels, self.top_channels, 3, padding=1)

    # ------------------------------------------------------------------ forward
    def forward_level(self, feat: Tensor, lvl: int, stride: int):
        """One pyramid level: cls logits (B, K, H, W), box (B, 4, H, W), centerness logits
        (B, 1, H, W) and the regression tower's features (B, C, H, W) (which heads built on
        FCOS, e.g. EmbedMask's and BlendMask's top layer, read)."""
        cls_feat, reg_feat = feat, feat
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        ctr = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        reg = self.conv_reg(reg_feat)
        if self.scales is not None:
            reg = self.scales[lvl](reg)
        if self.norm_reg_targets:
            reg = reg.clamp(min=0) if self.training else reg.clamp(min=0) * stride
        else:
            reg = reg.exp()
        return self.conv_cls(cls_feat), reg, ctr, reg_feat

    def forward(self, x: Tuple[Tensor]):
        """Returns per-level lists: cls logits (B, K, H, W), box (l, t, r, b) (B, 4, H, W)
        (stride units with ``norm_reg_targets`` in training, pixels at test time),
        centerness logits (B, 1, H, W), and, with ``top_channels``, top features
        (B, T, H, W)."""
        cls_scores, bbox_preds, ctrs, tops = [], [], [], []
        for lvl, (feat, stride) in enumerate(zip(x, self.strides)):
            cls, reg, ctr, reg_feat = self.forward_level(feat, lvl, stride)
            cls_scores.append(cls)
            bbox_preds.append(reg)
            ctrs.append(ctr)
            if self.top_channels > 0:
                tops.append(self.top_layer(reg_feat))
        if self.top_channels > 0:
            return cls_scores, bbox_preds, ctrs, tops
        return cls_scores, bbox_preds, ctrs

    # ------------------------------------------------------------------ targets
    def _points(self, featmap_sizes, dtype, device) -> List[Tensor]:
        strides = [s[0] if isinstance(s, (tuple, list)) else s for s in self.strides]
        return fcos_locations(featmap_sizes, strides, dtype, device)

    def get_targets(self, points: List[Tensor], batch_gt_instances):
        """Per image: labels (P,), reg targets (P, 4) (stride units with norm_reg_targets),
        gt_inds (P,) (-1 background). Points of all levels concatenated."""
        strides = [s[0] if isinstance(s, (tuple, list)) else s for s in self.strides]
        pts, pstr, rng = level_point_info(points, strides, self.regress_ranges)
        out = []
        for gt in batch_gt_instances:
            labels, reg, inds = fcos_targets(pts, pstr, rng, gt.bboxes.to(pts.dtype), gt.labels,
                                             self.num_classes, self.center_sample_radius
                                             if self.center_sampling else 0.0)
            if self.norm_reg_targets:
                reg = reg / pstr[:, None]
            out.append((labels, reg, inds))
        return out

    # ------------------------------------------------------------------ loss
    def loss(self, x: Tuple[Tensor], batch_data_samples) -> dict:
        from mmdet.models.utils import unpack_gt_instances
        outs = self(x)
        gts, gts_ignore, metas = unpack_gt_instances(batch_data_samples)
        top = outs[3] if len(outs) > 3 else None
        return self.loss_by_feat(outs[0], outs[1], outs[2], top, batch_gt_instances=gts,
                                 batch_img_metas=metas, batch_gt_instances_ignore=gts_ignore)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     centernesses: List[Tensor], top_feats: Optional[List[Tensor]] = None,
                     batch_gt_instances=None, batch_img_metas=None,
                     batch_gt_instances_ignore=None) -> dict:
        num_imgs = cls_scores[0].size(0)
        featmap_sizes = [f.shape[-2:] for f in cls_scores]
        points = self._points(featmap_sizes, bbox_preds[0].dtype, bbox_preds[0].device)
        targets = self.get_targets(points, batch_gt_instances)

        def flat(maps, c):  # image-major: (B, P, c)
            return torch.cat([m.permute(0, 2, 3, 1).reshape(num_imgs, -1, c) for m in maps], 1)

        cls = flat(cls_scores, self.cls_out_channels)
        reg = flat(bbox_preds, 4)
        ctr = flat(centernesses, 1)[..., 0]
        labels = torch.stack([t[0] for t in targets])
        reg_t = torch.stack([t[1] for t in targets])
        gt_inds = torch.stack([t[2] for t in targets])
        losses, extras = fcos_losses(
            cls.reshape(-1, cls.shape[-1]), reg.reshape(-1, 4), ctr.reshape(-1),
            labels.reshape(-1), reg_t.reshape(-1, 4), self.num_classes,
            reduce_mean=reduce_mean, **self.loss_opts)
        num_points = cls.shape[1]
        pos = extras['pos_inds']
        info = dict(pos_img=pos // num_points, pos_point=pos % num_points,
                    pos_gt_inds=gt_inds.reshape(-1)[pos], ctr_targets=extras['ctr_targets'],
                    loss_denorm=extras['loss_denorm'], num_pos_avg=extras['num_pos_avg'],
                    points=torch.cat(points)[pos % num_points], num_imgs=num_imgs)
        if top_feats is not None:
            info['param_preds'] = flat(top_feats, top_feats[0].shape[1]).reshape(
                -1, top_feats[0].shape[1])[pos]
        self._raw_positive_infos = info
        return losses

    def get_positive_infos(self) -> List[InstanceData]:
        """Per image: ``pos_assigned_gt_inds``, ``points``, ``ctr_targets`` (the official
        ``gt_ctrs``), ``param_preds`` (with ``top_channels``) and, in the metainfo,
        ``loss_denorm`` (the batch's GPU-averaged centerness-target sum)."""
        info = self._raw_positive_infos
        if not info:
            raise RuntimeError('get_positive_infos() needs a loss() call first')
        out = []
        for i in range(info['num_imgs']):
            m = info['pos_img'] == i
            d = InstanceData(metainfo=dict(loss_denorm=info['loss_denorm'],
                                           num_pos_avg=info['num_pos_avg']))
            d.pos_assigned_gt_inds = info['pos_gt_inds'][m]
            d.points = info['points'][m]
            d.ctr_targets = info['ctr_targets'][m]
            if 'param_preds' in info:
                d.param_preds = info['param_preds'][m]
            out.append(d)
        return out

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        top_feats: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None, cfg=None,
                        rescale: bool = False, with_nms: bool = True) -> List[InstanceData]:
        cfg = copy.deepcopy(cfg if cfg is not None else self.test_cfg) or {}
        opts = {k: cfg.get(k, v) for k, v in _TEST_DEFAULTS.items()}
        nms_cfg = opts['nms']
        registered_nms = bool(nms_cfg) and nms_cfg.get('type', 'nms') != 'nms'
        if registered_nms or not with_nms or not nms_cfg:
            nms_thr, max_per_img = 0.0, (-1 if registered_nms else opts['max_per_img'])
        else:
            nms_thr, max_per_img = nms_cfg.get('iou_threshold', 0.6), opts['max_per_img']
        featmap_sizes = [f.shape[-2:] for f in cls_scores]
        points = self._points(featmap_sizes, bbox_preds[0].dtype, bbox_preds[0].device)
        all_points = torch.cat(points)
        # forward() returns stride units in training mode (norm_reg_targets): predictions made
        # while training (e.g. CenterMask's proposals) are decoded in pixels too
        strides = [st[0] if isinstance(st, (tuple, list)) else st for st in self.strides]
        reg_scales = strides if (self.training and self.norm_reg_targets) else [1] * len(strides)
        results = []
        for i, meta in enumerate(batch_img_metas):
            det = fcos_predict_single(
                [c[i].permute(1, 2, 0).reshape(-1, self.cls_out_channels) for c in cls_scores],
                [b[i].permute(1, 2, 0).reshape(-1, 4) * scale
                 for b, scale in zip(bbox_preds, reg_scales)],
                [s[i].reshape(-1) for s in score_factors], points,
                score_thr=opts['score_thr'], nms_pre=opts['nms_pre'],
                thresh_with_ctr=opts['thresh_with_ctr'],
                candidate_mode=opts['candidate_mode'], score=opts['score'],
                nms_thr=nms_thr, max_per_img=max_per_img,
                clip_hw=meta['img_shape'][:2] if opts['clip_before_nms'] else None,
                clip_offset=opts['clip_offset'])
            res = InstanceData(bboxes=det['bboxes'], scores=det['scores'], labels=det['labels'])
            res.points = all_points[det['point_inds']]
            res.levels = det['levels']
            if top_feats is not None:
                res.param_preds = torch.cat(
                    [t[i].permute(1, 2, 0).reshape(-1, t.shape[1]) for t in top_feats]
                )[det['point_inds']]
            if registered_nms and with_nms and len(res) > 0:
                res = apply_nms_to_results(res, nms_cfg)[:opts['max_per_img']]
            if rescale:
                sf = meta['scale_factor']
                h, w = meta['ori_shape'][:2]
                res.bboxes, keep = rescale_clip_boxes(res.bboxes, (1 / sf[0], 1 / sf[1]), (h, w))
                res = res[keep]
            results.append(res)
        return results
