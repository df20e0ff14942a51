"""One faithful FCOS for BlendMask, CenterMask, EmbedMask and PolarMask (framework-free).

Shape shorthand: L pyramid levels, P points (all levels of one image concatenated, finest
first), G ground-truth objects, K classes, N positives, M candidates, D detections.

The official FCOS variants (AdelaiDet ``adet/modeling/fcos``, FCOS-official
``tianzhi0549/FCOS`` (maskrcnn-benchmark), centermask2 ``centermask/modeling/fcos``, PolarMask
(mmdet 1.0)) differ from mmdet's ``FCOSHead``; this package computes what they compute:

Targets (:mod:`.targets`)
    ``fcos_locations(featmap_sizes, strides)`` -> L x (P_l, 2): ``s * idx + s // 2``.
    ``regress_ranges_from_sizes((64, 128, 256, 512))`` -> [(-1, 64), ..., (512, INF)].
    ``level_point_info(points, strides, ranges)`` -> points (P, 2), strides (P,), ranges (P, 2).
    ``fcos_targets(points, strides, ranges, gt_boxes, gt_labels, K, center_sample_radius=1.5,
    centers=None, extra_valid=None)`` -> labels (P,) (K = bg), reg_targets (P, 4) pixels,
    gt_inds (P,) (-1 = bg). Assignment is ``insplug.core.assigners.center_sampling_assign``,
    which computes the official rule exactly (strict inside test of the radius*stride square
    clipped to the box; inclusive regress range; smallest area, first GT on ties).
    ``centerness_targets(reg_targets)`` -> (N,) sqrt(min/max lr * min/max tb).

Losses (:mod:`.loss`)
    ``fcos_ious(pred, target, smooth=1.0)`` -> ious, gious with (I + 1) / (U + 1).
    ``iou_loss(ious, gious, 'giou'|'iou'|'linear_iou', weight)`` -> summed loss.
    ``fcos_losses(cls_logits (P,K), reg_pred (P,4), ctr_logits (P,), labels (P,),
    reg_targets (P,4), K, loss_type='giou', iou_smooth=1.0, box_quality='ctrness',
    cls_normalizer='fg', focal_alpha=0.25, focal_gamma=2.0, reduce_mean=None)`` ->
    (losses {loss_cls, loss_bbox, loss_centerness}, extras {pos_inds, ctr_targets,
    loss_denorm, num_pos_avg}). Normalisers: focal sum / num_pos_avg; IoU loss weighted by
    the centerness target, summed / sum of centerness targets (``loss_denorm``, the BlendMask
    mask-loss normaliser too); centerness BCE sum / num_pos_avg.

Inference (:mod:`.postprocess`)
    ``select_candidates(cls_prob (P_l,K), ctr_prob (P_l,), score_thr, nms_pre,
    thresh_with_ctr, candidate_mode='threshold_topk'|'point_topk')``;
    ``final_scores(products, cls_prob, score='sqrt'|'product'|'cls')``;
    ``decode_ltrb``; ``nms_kthvalue`` (torchvision batched NMS in float32, then detectron2's
    kthvalue top-k); ``fcos_predict_single(...)`` chains them for one image;
    ``rescale_clip_boxes(boxes, scale_xy, out_hw)`` -> clipped boxes + non-empty mask
    (detectron2 ``detector_postprocess``: boxes are NOT clipped before the mask branch,
    they are clipped at paste time; masks are binarised with ``>= 0.5``).

mmdet adapter: ``insplug.mmdet.fcos.FaithfulFCOSHead`` (registered ``FaithfulFCOSHead``). Its
options and the settings of each release:

====================  =========  =========  ==============  ==========  ============
option                AdelaiDet  BlendMask  FCOS-official   centerm.2   PolarMask
                      defaults   (AdelaiD)  (mrcnn-bench.)              (mmdet 1.0)
====================  =========  =========  ==============  ==========  ============
use_scale             True       **False**  True            True        True
norm_reg_targets      True       True       cfg (imprv: T)  True        False (exp)
centerness_on_reg     True       True       cfg (imprv: T)  True        False
center_sample_radius  1.5        1.5        cfg (imprv 1.5) 1.5         1.5, mask ctr
loss_type             giou       giou       cfg iou/giou    giou        own IoU loss
iou_smooth (+1)       1.0        1.0        1.0             1.0         (own)
test thresh_with_ctr  False      **True**   False           False       -
test candidate_mode   thr_topk   thr_topk   thr_topk        thr_topk    point_topk
test score            sqrt       sqrt       sqrt            sqrt        product
test clip_before_nms  False      False      True (W-1)      False       True (W-1)
test nms iou / max    0.6 / 100  0.6 / 100  0.6 / 100       0.6 / 100   cfg
====================  =========  =========  ==============  ==========  ============

(AdelaiDet and centermask2 were checked line by line and AdelaiDet is covered by golden data;
the FCOS-official and PolarMask columns were read from their code: maskrcnn-benchmark's NMS
uses legacy ``+1`` areas, which torchvision's NMS used here does not.)

Tower convs carry a bias in the AdelaiDet, centermask2 and FCOS-official releases
(``conv_bias=True``), GN(32) by default; PolarMask's towers have none (``bias=norm_cfg is None``). Norm layers get
no weight decay in the detectron2-based releases (``SOLVER.WEIGHT_DECAY_NORM = 0``): express it
in the config with ``optim_wrapper.paramwise_cfg = dict(norm_decay_mult=0.0)``.
"""
from .loss import fcos_ious, fcos_losses, iou_loss, sigmoid_focal_loss_sum
from .postprocess import (decode_ltrb, fcos_predict_single, final_scores, nms_kthvalue,
                          rescale_clip_boxes, select_candidates)
from .targets import (INF, centerness_targets, fcos_locations, fcos_targets, level_point_info,
                      regress_ranges_from_sizes)

__all__ = ['INF', 'fcos_locations', 'regress_ranges_from_sizes', 'level_point_info',
           'fcos_targets', 'centerness_targets', 'fcos_ious', 'iou_loss',
           'sigmoid_focal_loss_sum', 'fcos_losses', 'select_candidates', 'final_scores',
           'decode_ltrb', 'nms_kthvalue', 'fcos_predict_single', 'rescale_clip_boxes']
