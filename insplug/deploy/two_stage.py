"""Traceable full-model export of mmdet two-stage instance segmenters (RefineMask, Mask R-CNN,
PointRend).

Shapes: H x W the fixed input size; Hp x Wp padded; A anchors over all FPN levels; P proposals
(data-dependent, <= the RPN's ``max_per_img``); C classes; K = the R-CNN ``max_per_img``
detection slots of the graph; S the mask side (28 for Mask R-CNN, 112 for RefineMask).

mmdet's tensor-mode two-stage forward cannot be traced: it selects proposals and detections in
Python per image and its RoI extractor branches on which FPN levels receive RoIs, so a trace
freezes the tracing image's choices (see docs/onnx_export.md). :class:`TwoStageFull` is the same
computation written with tensor ops only, each step the mmdet 3.3 step it mirrors:

* RPN (``RPNHead._predict_by_feat_single`` + ``_bbox_post_process``): per level the
  ``nms_pre`` best sigmoid scores, ``delta2bbox`` decoding clipped to the image, boxes of side
  <= ``min_bbox_size`` dropped, NMS per level (mmcv ``batched_nms``: boxes offset by
  ``level * (max coordinate + 1)``), the best ``max_per_img``. NMS is
  ``torchvision.ops.nms`` (ONNX ``NonMaxSuppression``); the dropping is ``nonzero`` (ONNX
  ``NonZero``): both give data-dependent sizes inside the graph, not frozen ones.
* RoI extraction (``SingleRoIExtractor``): every RoI is pooled on every level with
  ``torchvision.ops.roi_align`` (ONNX ``RoiAlign``; mmcv's RoIAlign exports an invalid
  ``Squeeze``) and the level ``floor(log2(sqrt(area) / finest_scale + 1e-6))`` is selected by a
  one-hot sum (exact: one non-zero term), instead of a Python branch per level.
* Box head + ``multiclass_nms``: softmax, class-specific ``delta2bbox``, scores > ``score_thr``,
  NMS per class (class offsets as mmcv), the best ``max_per_img``.
* Fixed-size outputs: the kept detections are padded with score -1 rows to K slots; ``valid``
  marks the real ones (in descending score order, as mmdet returns them).
* Masks: the mask head on the K slots (RefineMask: semantic branch, SFM stages and the
  boundary-aware merge; Mask R-CNN: the label's channel; PointRend: the coarse head on
  mmcv's ``SimpleRoIAlign`` point grid, then mmdet's own subdivision steps, whose shapes are
  fixed by the K slots and the point count), sigmoid, pasted into H x W with the
  paste geometry of :mod:`insplug.core.postprocess.paste` over the whole image (bit-identical to
  the windowed paster: every pixel uses the same float formula; a fixed-size graph cannot size a
  window per box), ``>= mask_thr_binary``.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms, roi_align


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """(..., 4) x1, y1, x2, y2 clamped to [0, W] x [0, H] (mmdet's ``delta2bbox`` clipping)."""
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def decode_deltas(coder, priors: Tensor, deltas: Tensor, height: int, width: int) -> Tensor:
    """``DeltaXYWHBBoxCoder.decode`` with ``max_shape=(H, W)``, without its ONNX-only branch.

    Args:
        priors: (N, 4); deltas: (N, 4 * k).

    Returns:
        (N, 4 * k) boxes clipped to the image.
    """
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    boxes = delta2bbox(priors, deltas, coder.means, coder.stds, None, 16 / 1000, False,
                       coder.add_ctr_clamp, coder.ctr_clamp)
    if not coder.clip_border:
        return boxes
    return clip_boxes(boxes.view(boxes.shape[0], -1, 4), height, width).view(boxes.shape)


def batched_nms_traceable(boxes: Tensor, scores: Tensor, idxs: Tensor,
                          iou_threshold: float) -> Tensor:
    """mmcv's ``batched_nms`` (not class-agnostic, below its split threshold): NMS within each
    ``idxs`` group by offsetting boxes by ``idx * (max coordinate + 1)``.

    Args:
        boxes: (N, 4); scores: (N,); idxs: (N,) int64 group of each box.

    Returns:
        (n,) int64 indices of the kept boxes, by descending score.
    """
    # coordinates are clipped to >= 0, so a 0 appended changes no maximum and keeps the
    # reduction defined when no box is left
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def pool_rois_all_levels(extractor, feats, rois: Tensor) -> Tensor:
    """``SingleRoIExtractor`` forward (no RoI rescale, no gc context) without level branches.

    Args:
        extractor: the mmdet ``SingleRoIExtractor`` (its RoIAlign layers give the settings).
        feats: tuple of (1, Cf, Hl, Wl) maps, finest first.
        rois: (N, 5) batch index, x1, y1, x2, y2.

    Returns:
        (N, Cf, s, s) RoI features, each from its mapped level.
    """
    num_levels = len(extractor.roi_layers)
    layers = torchvision_roi_aligns(extractor.roi_layers)
    if num_levels == 1:
        return layers[0](feats[0], rois)
    levels = extractor.map_roi_levels(rois, num_levels)  # (N,)
    return pool_levels_one_hot(layers, feats, rois, levels)


def torchvision_roi_aligns(roi_layers):
    """mmcv ``RoIAlign`` layers as torchvision ``roi_align`` callables ``(feat, rois)`` (ONNX
    ``RoiAlign``; mmcv's exports an invalid ``Squeeze``), with the same settings."""
    return [(lambda feat, rois, layer=layer: roi_align(
        feat, rois, layer.output_size, layer.spatial_scale, layer.sampling_ratio, layer.aligned))
        for layer in roi_layers]


def pool_levels_one_hot(layers, feats, rois: Tensor, levels: Tensor) -> Tensor:
    """Every RoI through every level's layer; each keeps its own level's result (a one-hot sum
    instead of a Python branch per level, which a trace would freeze).

    Args:
        layers: L callables ``(feat, rois) -> (N, C, s, s)``. feats: L (1, C, H_l, W_l).
        rois: (N, 5). levels: (N,) long in [0, L).

    Returns:
        (N, C, s, s), exact: one non-zero term per RoI.
    """
    out = 0
    for lvl, (layer, feat) in enumerate(zip(layers, feats)):
        pooled = layer(feat, rois)
        out = out + pooled * (levels == lvl).to(pooled.dtype)[:, None, None, None]
    return out


def paste_whole_image(probs: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Bilinear paste of box-frame masks over the whole image (the formula of
    :func:`insplug.core.postprocess.paste.sample_box_windows`, float32).

    Args:
        probs: (K, S, S); boxes: (K, 4).

    Returns:
        (K, H, W) sampled values.
    """
    k = probs.shape[0]
    ys = torch.arange(height, dtype=torch.float32, device=probs.device) + 0.5
    xs = torch.arange(width, dtype=torch.float32, device=probs.device) + 0.5
    bx0, by0, bx1, by1 = boxes.to(torch.float32).unbind(1)
    gy = (ys[None] - by0[:, None]) / (by1 - by0).clamp(min=1e-6)[:, None] * 2 - 1  # (K, H)
    gx = (xs[None] - bx0[:, None]) / (bx1 - bx0).clamp(min=1e-6)[:, None] * 2 - 1  # (K, W)
    grid = torch.stack([gx[:, None, :].expand(k, height, width),
                        gy[:, :, None].expand(k, height, width)], -1)
    return F.grid_sample(probs[:, None].to(torch.float32), grid, mode='bilinear',
                         padding_mode='zeros', align_corners=False)[:, 0]


def supports_two_stage(model) -> bool:
    """True for mmdet two-stage models this wrapper reproduces: ``RPNHead`` +
    ``StandardRoIHead`` + ``FCNMaskHead``, insplug's ``RefineRoIHead`` + ``RefineMaskHead`` or
    mmdet's ``PointRendRoIHead`` + ``CoarseMaskHead``, with a ``SingleRoIExtractor`` and a
    delta-coded box head."""
    roi_head = getattr(model, 'roi_head', None)
    rpn = getattr(model, 'rpn_head', None)
    if roi_head is None or rpn is None or getattr(roi_head, 'mask_head', None) is None:
        return False
    names = (type(rpn).__name__, type(roi_head).__name__, type(roi_head.mask_head).__name__,
             type(roi_head.bbox_roi_extractor).__name__,
             type(roi_head.bbox_head.bbox_coder).__name__)
    heads = {'StandardRoIHead': ('FCNMaskHead',), 'RefineRoIHead': ('RefineMaskHead',),
             'PointRendRoIHead': ('CoarseMaskHead',)}
    return (names[0] == 'RPNHead' and names[2] in heads.get(names[1], ())
            and names[3] == 'SingleRoIExtractor' and names[4] == 'DeltaXYWHBBoxCoder'
            and not roi_head.bbox_head.reg_class_agnostic)


class TwoStageFull(nn.Module):
    """RefineMask / Mask R-CNN / PointRend, pre-processing to final instances, for one
    (1, 3, H, W) BGR image (see the module docstring for each step).

    Outputs (in this order):
        ``scores`` (K,) float32 (-1 where not valid), ``labels`` (K,) int64,
        ``masks`` (K, H, W) bool, ``bboxes`` (K, 4) float32, ``valid`` (K,) bool,
        ``rpn_cls`` (A,) and ``rpn_reg`` (A, 4): the raw RPN outputs of every level, flattened
        in mmdet's (level, y, x, anchor) order, for checking.
    """

    output_names = ['scores', 'labels', 'masks', 'bboxes', 'valid', 'rpn_cls', 'rpn_reg']
    supports = staticmethod(supports_two_stage)  # the models this wrapper reproduces

    def __init__(self, model, shape: Tuple[int, int]):
        super().__init__()
        from .onnx_export import Preprocess, preprocess_params
        if not self.supports(model):
            raise ValueError(f'{type(model).__name__}: not a model {type(self).__name__} '
                             'reproduces (see its supports function)')
        self.model = model
        self.preprocess = Preprocess(preprocess_params(model), shape)
        self.shape = tuple(shape)
        self.rpn_cfg = model.test_cfg.rpn
        self.rcnn_cfg = model.test_cfg.rcnn
        self.mask_thr = float(self.rcnn_cfg.get('mask_thr_binary', 0.5))
        self.topk = int(self.rcnn_cfg.max_per_img)
        self.return_probs = False  # verification only: also return the pasted probabilities

    # ---------------------------------------------------------------- stages
    def proposals(self, cls_scores, bbox_preds) -> Tuple[Tensor, Tensor, Tensor]:
        """RPN outputs -> (P, 4) proposals, and the flattened raw (A,) scores, (A, 4) deltas."""
        rpn = self.model.rpn_head
        height, width = self.shape
        sizes = [c.shape[-2:] for c in cls_scores]
        priors = rpn.prior_generator.grid_priors(sizes, device=cls_scores[0].device)
        nms_pre = int(self.rpn_cfg.get('nms_pre', -1))
        boxes, scores, level_ids, raw_cls, raw_reg = [], [], [], [], []
        for lvl, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            cls = cls[0].permute(1, 2, 0).reshape(-1)
            reg = reg[0].permute(1, 2, 0).reshape(-1, 4)
            raw_cls.append(cls)
            raw_reg.append(reg)
            prob = cls.sigmoid()
            level_priors = priors[lvl]
            if 0 < nms_pre < prob.shape[0]:
                prob, top = prob.topk(nms_pre)
                reg, level_priors = reg[top], level_priors[top]
            boxes.append(decode_deltas(rpn.bbox_coder, level_priors, reg, height, width))
            scores.append(prob)
            level_ids.append(torch.full_like(prob, lvl, dtype=torch.long))
        boxes, scores, level_ids = torch.cat(boxes), torch.cat(scores), torch.cat(level_ids)
        min_size = self.rpn_cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            keep = ((wh[:, 0] > min_size) & (wh[:, 1] > min_size)).nonzero()[:, 0]
            boxes, scores, level_ids = boxes[keep], scores[keep], level_ids[keep]
        keep = batched_nms_traceable(boxes, scores, level_ids,
                                     float(self.rpn_cfg.nms.iou_threshold))
        keep = keep[:int(self.rpn_cfg.max_per_img)]
        return boxes[keep], torch.cat(raw_cls), torch.cat(raw_reg)

    def pool_bbox_rois(self, extractor, feats, rois: Tensor) -> Tensor:
        """(N, 5) RoIs -> (N, Cf, s, s) box-head features (``SingleRoIExtractor``)."""
        return pool_rois_all_levels(extractor, feats, rois)

    def class_boxes(self, proposals: Tensor, bbox_pred: Tensor, num_classes: int) -> Tensor:
        """(P, 4) proposals, (P, 4 C) deltas -> (P * C, 4) boxes, class-major within each RoI."""
        height, width = self.shape
        boxes = decode_deltas(self.model.roi_head.bbox_head.bbox_coder, proposals, bbox_pred,
                              height, width)
        return boxes.view(-1, 4)

    def detections(self, feats, proposals: Tensor):
        """Proposals -> K slots: (K,) scores (-1 padding), (K,) labels, (K, 4) boxes,
        (K,) valid."""
        roi_head = self.model.roi_head
        bbox_head = roi_head.bbox_head
        rois = torch.cat([torch.zeros_like(proposals[:, :1]), proposals], 1)
        extractor = roi_head.bbox_roi_extractor
        roi_feats = self.pool_bbox_rois(extractor, feats[:extractor.num_inputs], rois)
        cls_score, bbox_pred = bbox_head(roi_feats)
        probs = F.softmax(cls_score, dim=-1)
        num_classes = bbox_head.num_classes
        boxes = self.class_boxes(proposals, bbox_pred, num_classes)
        scores = probs[:, :num_classes].reshape(-1)
        labels = (torch.zeros_like(probs[:, :num_classes], dtype=torch.long)
                  + torch.arange(num_classes, device=probs.device)).reshape(-1)
        keep = (scores > float(self.rcnn_cfg.score_thr)).nonzero()[:, 0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms_traceable(boxes, scores, labels,
                                     float(self.rcnn_cfg.nms.iou_threshold))[:self.topk]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        # pad to K slots: real detections first (descending score), then score -1 rows
        k = self.topk
        scores = torch.cat([scores, scores.new_full((k,), -1.0)])[:k]
        labels = torch.cat([labels, labels.new_zeros(k)])[:k]
        boxes = torch.cat([boxes, boxes.new_zeros(k, 4)])[:k]
        return scores, labels, boxes, scores >= 0

    def mask_probs(self, feats, boxes: Tensor, labels: Tensor) -> Tensor:
        """(K, 4) boxes, (K,) labels -> (K, S, S) mask probabilities."""
        roi_head = self.model.roi_head
        head = roi_head.mask_head
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)
        extractor = roi_head.mask_roi_extractor
        if type(extractor).__name__ == 'GenericRoIExtractor':
            # PointRend: mmcv's SimpleRoIAlign is bilinear point sampling on a regular grid
            # per RoI (grid_sample; ONNX GridSample), traceable as it is
            roi_feats = extractor(feats[:extractor.num_inputs], rois)
        else:
            roi_feats = pool_rois_all_levels(extractor, feats[:extractor.num_inputs], rois)
        if type(head).__name__ == 'RefineMaskHead':
            semantic_feats, semantic_logits = head.forward_semantic(
                roi_head._semantic_input(feats))
            stage_logits = head.forward_instances(roi_feats, semantic_feats, semantic_logits,
                                                  rois, labels)
            return head.test_logits(stage_logits).sigmoid()
        logits = head(roi_feats)  # (K, C or 1, S, S)
        if type(roi_head).__name__ == 'PointRendRoIHead':
            # mmdet's own subdivision (fixed shapes: K slots, a fixed number of points per
            # step): upsample x2, the most uncertain points of the label's channel (top-k),
            # their fine-grained (bilinear) and coarse features, the point head, scatter
            logits = roi_head._mask_point_forward_test(feats, rois, labels, logits)
        if head.class_agnostic:
            logits = logits[:, 0]
        else:
            index = labels.view(-1, 1, 1, 1).expand(-1, 1, *logits.shape[-2:])
            logits = logits.gather(1, index)[:, 0]
        return logits.sigmoid()

    def forward(self, image: Tensor):
        feats = self.model.extract_feat(self.preprocess(image))
        cls_scores, bbox_preds = self.model.rpn_head(feats)
        proposals, rpn_cls, rpn_reg = self.proposals(cls_scores, bbox_preds)
        scores, labels, boxes, valid = self.detections(feats, proposals)
        probs = paste_whole_image(self.mask_probs(feats, boxes, labels), boxes, *self.shape)
        masks = probs >= self.mask_thr
        outs = (scores, labels, masks, boxes, valid, rpn_cls, rpn_reg)
        return outs + (probs,) if self.return_probs else outs

    # ---------------------------------------------------------------- reference
    def reference(self, image: Tensor):
        """mmdet's own ``predict`` on the same pre-processed image (the PyTorch reference):
        ``InstanceData`` with bboxes, scores, labels, masks."""
        from mmdet.structures import DetDataSample
        pad = self.preprocess.pad_shape
        sample = DetDataSample(metainfo=dict(img_shape=self.shape, ori_shape=self.shape,
                                             pad_shape=pad, batch_input_shape=pad,
                                             scale_factor=(1.0, 1.0)))
        with torch.no_grad():
            return self.model.predict(self.preprocess(image), [sample], rescale=True)[0] \
                .pred_instances


def compare_two_stage(torch_outs, onnx_outs, reference, mask_thr: float, atol: float = 1e-4,
                      tie_tol: float = 1e-4, box_tol: float = 1e-3, output_names=None) -> dict:
    """Differences between onnxruntime, the PyTorch wrapper and mmdet's ``predict``.

    Args:
        torch_outs: the wrapper's PyTorch outputs with the pasted probabilities last
            (``return_probs``); they mark the threshold ties.
        onnx_outs: onnxruntime's outputs (:attr:`TwoStageFull.output_names` order).
        reference: mmdet's ``pred_instances`` for the same image.
        output_names: the wrapper's ``output_names`` (default :class:`TwoStageFull`'s); with
            ``mask_scores`` among them, those are compared with the reference's too.

    Returns:
        ``max_abs_rpn_cls`` / ``max_abs_rpn_reg`` (raw outputs, onnxruntime vs PyTorch),
        ``kept_reference`` / ``kept_onnx`` / ``kept_torch``, ``same_kept`` (same labels),
        ``max_abs_scores`` / ``max_abs_bboxes`` (onnxruntime vs predict), mask pixels differing
        from predict (all, and away from ``|p - mask_thr| <= tie_tol``), ``ok``. Boxes are
        pixel coordinates up to the image size, so they get ``box_tol`` pixels (float32 keeps
        about 7 digits: ~3e-5 px at 256 px after the two decodings).
    """
    import numpy as np
    names = list(output_names or TwoStageFull.output_names)
    t = {n: v.numpy() for n, v in zip(names, torch_outs[:len(names)])}
    o = dict(zip(names, onnx_outs))
    probs = torch_outs[-1].numpy()
    report = {f'max_abs_{n}': float(np.abs(t[n].astype(np.float64) - o[n]).max())
              for n in ('rpn_cls', 'rpn_reg')}
    ov = np.flatnonzero(o['valid'])
    report.update(kept_reference=int(len(reference.scores)), kept_onnx=int(len(ov)),
                  kept_torch=int(t['valid'].sum()))
    ref = {k: getattr(reference, k).numpy() for k in ('scores', 'labels', 'bboxes', 'masks')}
    report['same_kept'] = bool(len(ov) == len(ref['scores'])
                               and (o['labels'][ov] == ref['labels']).all())
    if report['same_kept'] and len(ov):
        # both in descending score order (mmdet keeps NMS order); compare slot by slot
        report['max_abs_scores'] = float(np.abs(o['scores'][ov] - ref['scores']).max())
        report['max_abs_bboxes'] = float(np.abs(o['bboxes'][ov] - ref['bboxes']).max())
        if 'mask_scores' in names:
            report['max_abs_mask_scores'] = float(
                np.abs(o['mask_scores'][ov] - reference.mask_scores.numpy()).max())
        diff = o['masks'][ov] != ref['masks']
        tie = np.abs(probs[ov] - mask_thr) <= tie_tol
        report['mask_pixels_differing'] = int(diff.sum())
        report['mask_pixels_differing_off_ties'] = int((diff & ~tie).sum())
    report['ok'] = bool(
        report['same_kept'] and max(report['max_abs_rpn_cls'], report['max_abs_rpn_reg']) <= atol
        and report.get('max_abs_scores', 0.0) <= atol
        and report.get('max_abs_mask_scores', 0.0) <= atol
        and report.get('max_abs_bboxes', 0.0) <= box_tol
        and report.get('mask_pixels_differing_off_ties', 0) == 0)
    return report
