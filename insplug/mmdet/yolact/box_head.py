"""``YOLACTBoxHead``: YOLACT's shared prediction head with the release's priors, matching, OHEM,
loss normalisers and Fast NMS (dbolya/yolact), on mmdet's ``YOLACTHead`` layers.

The layers are mmdet's ``YOLACTHead`` (one shared 3x3 conv + ReLU, then 3x3 class / box /
coefficient convs, tanh on the coefficients), which is the release's ``PredictionModule`` with
``extra_head_net=[(256, 3)]`` and ``share_prediction_module=True``. Everything else follows the
release, with the maths in :mod:`insplug.core.prototypes.yolact`:

* priors from ``prior_scales`` / ``prior_ratios`` / ``prior_max_size`` (``square_anchors`` =
  YOLACT's ``use_square_anchors``), computed for the actual feature sizes, relative to the
  network input (``batch_input_shape``); no mmdet anchor generator (one is built internally only
  to give mmdet's ``AnchorHead`` its prior count);
* matching with forced best priors and crowd boxes (``batch_gt_instances_ignore``) as neutral;
* ``loss_cls`` = OHEM cross-entropy sum, ``loss_bbox`` = 1.5 x smooth-L1 sum, both divided by the
  batch's number of positives (clamped to >= 1: the release divides by zero on a batch without
  objects);
* inference: softmax; candidates = anchors whose best class score > ``score_thr`` in every class;
  per-class Fast NMS (insplug's ``fast_nms``, ``top_k``), ``max_per_img`` best; boxes *not*
  clipped before the mask head (the release crops masks with the raw boxes); returned boxes in
  input pixels (``rescale=False``) or, with ``rescale=True``, the release's output boxes.

``positive_infos`` for the mask head carry per image ``coeffs``, ``pos_inds``,
``pos_assigned_gt_inds``, ``bboxes`` (matched GT, pixels) and the batch's ``num_total_pos``
(metainfo).
"""
from typing import List, Optional, Sequence

import torch
from mmdet.models.dense_heads.yolact_head import YOLACTHead
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.prototypes import yolact as Y
from insplug.registry import MODELS

__all__ = ['YOLACTBoxHead']


def input_size(meta: dict):
    """(H, W) of the network input (padded batch) the relative coordinates refer to."""
    return tuple(meta.get('batch_input_shape', meta['img_shape'][:2]))


@MODELS.register_module()
class YOLACTBoxHead(YOLACTHead):
    """YOLACT's box/class/coefficient head, trained and decoded as the release does.

    Args:
        num_classes: K (foreground).
        in_channels, feat_channels, num_head_convs, num_protos: mmdet ``YOLACTHead``'s.
        prior_scales: per level, the anchor scales in pixels of a ``prior_max_size`` input
            (YOLACT ``[[24], [48], [96], [192], [384]]``; YOLACT++ ``[[s * 2 ** (j / 3) for j in
            range(3)] for s in (24, 48, ...)]``).
        prior_ratios: aspect ratios ``(1, 1/2, 2)``.
        prior_max_size: 550.
        square_anchors: YOLACT True (``use_square_anchors``), YOLACT++ False.
        loss_cls_weight: ``conf_alpha`` (1).  loss_bbox_weight: ``bbox_alpha`` (1.5).
        train_cfg: ``pos_iou_thr`` (0.5), ``neg_iou_thr`` (0.4), ``crowd_iou_thr`` (0.7),
            ``neg_pos_ratio`` (3).
        test_cfg: ``score_thr`` (0.05), ``iou_thr`` (0.5), ``top_k`` (200), ``max_per_img`` (100),
            ``second_threshold`` (False), ``integer_boxes`` (True: the release truncates output
            boxes to integers).
    """

    def __init__(self, num_classes: int, in_channels: int, feat_channels: int = 256,
                 num_head_convs: int = 1, num_protos: int = 32,
                 prior_scales: Sequence[Sequence[float]] = ((24,), (48,), (96,), (192,), (384,)),
                 prior_ratios: Sequence[float] = (1.0, 0.5, 2.0), prior_max_size: float = 550,
                 square_anchors: bool = True, loss_cls_weight: float = 1.0,
                 loss_bbox_weight: float = 1.5, train_cfg=None, test_cfg=None,
                 init_cfg=dict(type='Xavier', distribution='uniform', bias=0, layer='Conv2d'),
                 **kwargs):
        kwargs.pop('anchor_generator', None)
        kwargs.pop('use_ohem', None)
        num = {len(s) for s in prior_scales}
        if len(num) != 1:
            raise ValueError('every level needs the same number of prior scales, got '
                             f'{prior_scales}')
        n_priors = num.pop() * len(prior_ratios)
        anchor_generator = dict(type='AnchorGenerator', ratios=[1.0], scales=[1.0] * n_priors,
                                strides=[2 ** (i + 3) for i in range(len(prior_scales))])
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         feat_channels=feat_channels, num_head_convs=num_head_convs,
                         num_protos=num_protos, anchor_generator=anchor_generator,
                         use_ohem=True, init_cfg=init_cfg, train_cfg=None, test_cfg=test_cfg,
                         **kwargs)
        if self.use_sigmoid_cls:
            raise ValueError('YOLACTBoxHead uses softmax classification (use_sigmoid=False)')
        self.train_cfg = train_cfg
        self.prior_scales = [list(s) for s in prior_scales]
        self.prior_ratios = list(prior_ratios)
        self.prior_max_size = prior_max_size
        self.square_anchors = square_anchors
        self.loss_cls_weight = loss_cls_weight
        self.loss_bbox_weight = loss_bbox_weight
        self._pos_infos = None

    # ------------------------------------------------------------------ helpers
    def priors(self, feat_sizes, device, dtype) -> Tensor:
        """(P, 4) relative centre-size priors for these feature sizes."""
        return Y.make_priors(feat_sizes, self.prior_scales, self.prior_ratios,
                             self.prior_max_size, self.square_anchors, device, dtype)

    def _flatten(self, preds: List[Tensor], c: int) -> Tensor:
        b = preds[0].size(0)
        return torch.cat([p.permute(0, 2, 3, 1).reshape(b, -1, c) for p in preds], 1)

    def _cfg(self, key, default):
        cfg = self.train_cfg or {}
        return cfg.get(key, default)

    # ------------------------------------------------------------------ training
    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     coeff_preds: List[Tensor], batch_gt_instances: List[InstanceData],
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[InstanceData]] = None) -> dict:
        feat_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        cls = self._flatten(cls_scores, self.cls_out_channels)      # (B, P, K + 1)
        loc = self._flatten(bbox_preds, 4)                           # (B, P, 4)
        coeff = self._flatten(coeff_preds, self.num_protos)          # (B, P, k)
        priors = self.priors(feat_sizes, cls.device, loc.dtype)
        rel, crowds = [], []
        for i, (gt, meta) in enumerate(zip(batch_gt_instances, batch_img_metas)):
            h, w = input_size(meta)
            scale = gt.bboxes.new_tensor([w, h, w, h])
            rel.append(gt.bboxes.to(loc.dtype) / scale)
            ign = batch_gt_instances_ignore[i] if batch_gt_instances_ignore else None
            crowds.append(ign.bboxes.to(loc.dtype) / scale
                          if ign is not None and len(ign) else None)
        labels, gt_inds, loc_t = Y.match_batch(
            rel, [gt.labels for gt in batch_gt_instances], crowds, priors, self.num_classes,
            self._cfg('pos_iou_thr', 0.5), self._cfg('neg_iou_thr', 0.4),
            self._cfg('crowd_iou_thr', 0.7))
        losses, pos, num_pos = Y.box_branch_losses(
            cls, loc, labels, loc_t, self._cfg('neg_pos_ratio', 3), self.loss_cls_weight,
            self.loss_bbox_weight)
        infos = []
        for i, gt in enumerate(batch_gt_instances):
            inds = pos[i].nonzero()[:, 0]
            info = InstanceData(metainfo=dict(num_total_pos=int(num_pos)))
            info.pos_inds = inds
            info.pos_assigned_gt_inds = gt_inds[i][inds]
            info.coeffs = coeff[i][inds]
            info.bboxes = gt.bboxes[gt_inds[i][inds]] if len(gt) else \
                gt.bboxes.new_zeros((0, 4))
            infos.append(info)
        self._pos_infos = infos
        return losses

    def get_positive_infos(self) -> List[InstanceData]:
        if self._pos_infos is None:
            raise RuntimeError('get_positive_infos() called before loss()')
        infos, self._pos_infos = self._pos_infos, None
        return infos

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, cls_scores, bbox_preds, coeff_preds, batch_img_metas, cfg=None,
                        rescale=True, **kwargs) -> List[InstanceData]:
        cfg = self.test_cfg if cfg is None else cfg
        cfg = cfg or {}
        feat_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        cls = self._flatten(cls_scores, self.cls_out_channels)
        loc = self._flatten(bbox_preds, 4)
        coeff = self._flatten(coeff_preds, self.num_protos)
        priors = self.priors(feat_sizes, cls.device, loc.dtype)
        out = []
        for i, meta in enumerate(batch_img_metas):
            dets = Y.detect(cls[i], loc[i], coeff[i], priors, cfg.get('score_thr', 0.05),
                            cfg.get('iou_thr', 0.5), cfg.get('top_k', 200),
                            cfg.get('max_per_img', 100), cfg.get('second_threshold', False))
            res = InstanceData()
            res.rel_bboxes = dets['rel_bboxes']
            h, w = input_size(meta)
            if rescale:
                res.bboxes = self.output_boxes(res.rel_bboxes, meta, cfg)
            else:
                res.bboxes = res.rel_bboxes * res.rel_bboxes.new_tensor([w, h, w, h])
            res.labels = dets['labels']
            res.scores = dets['scores']
            res.coeffs = dets['coeffs']
            out.append(res)
        return out

    @staticmethod
    def output_boxes(rel_bboxes: Tensor, meta: dict, cfg=None) -> Tensor:
        """Relative boxes -> the release's output boxes on the original image (core
        :func:`~insplug.core.prototypes.yolact.output_boxes`; integers unless
        ``cfg.integer_boxes`` is False)."""
        cfg = cfg or {}
        return Y.output_boxes(rel_bboxes, input_size(meta), meta['img_shape'][:2],
                              meta['ori_shape'][:2], meta.get('scale_factor'),
                              cfg.get('integer_boxes', True))
