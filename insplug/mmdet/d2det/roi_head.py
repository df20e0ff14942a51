"""``D2DetStandardRoIHead``: D2Det's second stage (the release's ``D2Det`` detector) in mmdet 3.x.

* classification: a stock ``Shared2FCBBoxHead`` with ``with_reg=False`` (CE weight 2.0) on
  discriminative RoI pooling features (:class:`DiscriminativeRoIExtractor`);
* localisation: the dense local regression head on 14 x 14 RoIAlign features of the positive
  RoIs, randomly jittered (``jitter_amplitude`` 0.15) and sub-sampled to ``max_num_reg`` (192)
  per batch, as in the release's ``forward_train``;
* instance variant (``d2det_head.with_mask``): the head's 28 x 28 class masks and mask IoUs.

Losses (names here / in the release): ``loss_reg`` (dense IoU, 2.0), ``loss_overlap``
(``loss_mask``: overlap-map BCE, 1.0), ``loss_mask`` (``loss_instance``: mask BCE, 1.0),
``loss_mask_iou`` (``loss_iou``: MSE, 0.5). ``release_broadcast=True`` reproduces the release's
broadcast reductions of the IoU and MSE losses (see :mod:`insplug.core.d2det.loss`).

Test: the box head's proposals (no box regression) -> class scores and NMS -> dense regression on
the kept boxes -> the averaged boxes of the cells with overlap logit > 0 (clipped to the image;
the release's clip is a no-op, ``clip_refined=False``) -> instance variant: the head again on the
refined boxes, own-class masks pasted, mask score = box score + 0.3 * predicted mask IoU
(``mask_scores``); detection variant: soft-NMS (IoU 0.5) of the refined boxes, 100 per image.
"""
import torch
from mmcv.ops import batched_nms
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.utils import empty_instances, unpack_gt_instances
from mmdet.structures.bbox import bbox2roi

from insplug.core.d2det import (dense_losses, instance_masks, jitter_boxes, mask_area_ratios,
                                refine_boxes, sample_regression_rois)
from insplug.core.postprocess.paste import paste_masks_in_boxes
from insplug.registry import MODELS


@MODELS.register_module()
class D2DetStandardRoIHead(StandardRoIHead):
    """D2Det RoI head.

    Args (beyond ``StandardRoIHead``'s box arguments):
        reg_roi_extractor: RoI extractor of the dense-regression head (RoIAlign 14 x 14).
        d2det_head: a :class:`D2DetRegMaskHead` config.
        jitter_amplitude: uniform jitter of the positive RoIs (release 0.15).
        max_num_reg: positives the regression head sees per batch (release: train_cfg
            ``max_num_reg`` 192; ``train_cfg.max_num_reg`` wins when set).
        loss_reg_weight, loss_overlap_weight, loss_mask_weight, loss_mask_iou_weight: 2.0, 1.0,
            1.0, 0.5 (hard-coded in the release).
        release_broadcast: the release's broadcast loss reductions.
        box_plus_one: the dense IoU loss's mmdet 1.x ``+1`` box widths (release True).
        mask_score_weight: 0.3 (release). clip_refined: clip refined boxes to the image.
        soft_nms_iou: IoU of the detection variant's final soft-NMS (release 0.5).
    """

    def __init__(self, bbox_roi_extractor, bbox_head, reg_roi_extractor, d2det_head,
                 jitter_amplitude=0.15, max_num_reg=192, loss_reg_weight=2.0,
                 loss_overlap_weight=1.0, loss_mask_weight=1.0, loss_mask_iou_weight=0.5,
                 release_broadcast=False, box_plus_one=True, mask_score_weight=0.3,
                 clip_refined=True, soft_nms_iou=0.5, train_cfg=None, test_cfg=None,
                 init_cfg=None):
        super().__init__(bbox_roi_extractor=bbox_roi_extractor, bbox_head=bbox_head,
                         train_cfg=train_cfg, test_cfg=test_cfg, init_cfg=init_cfg)
        self.reg_roi_extractor = MODELS.build(reg_roi_extractor)
        self.d2det_head = MODELS.build(d2det_head)
        if self.d2det_head.with_mask and self.d2det_head.num_classes != self.bbox_head.num_classes:
            raise ValueError(f'd2det_head.num_classes {self.d2det_head.num_classes} != '
                             f'bbox_head.num_classes {self.bbox_head.num_classes}')
        self.jitter_amplitude = jitter_amplitude
        self.max_num_reg = max_num_reg
        self.loss_weights = dict(reg=loss_reg_weight, overlap=loss_overlap_weight,
                                 mask=loss_mask_weight, mask_iou=loss_mask_iou_weight)
        self.release_broadcast = release_broadcast
        self.box_plus_one = box_plus_one
        self.mask_score_weight = mask_score_weight
        self.clip_refined = clip_refined
        self.soft_nms_iou = soft_nms_iou

    @property
    def with_mask(self):
        return self.d2det_head.with_mask

    @property
    def map_size(self):
        return self.d2det_head.map_size

    # ------------------------------------------------------------------ training
    def _reg_features(self, x, boxes_list):
        rois = bbox2roi(boxes_list)
        return self.reg_roi_extractor(x[:self.reg_roi_extractor.num_inputs], rois)

    def loss(self, x, rpn_results_list, batch_data_samples):
        outputs = unpack_gt_instances(batch_data_samples)
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = outputs
        sampling_results = []
        for i in range(len(batch_data_samples)):  # one iteration per image
            rpn_results = rpn_results_list[i]
            rpn_results.priors = rpn_results.pop('bboxes')
            assign_result = self.bbox_assigner.assign(rpn_results, batch_gt_instances[i],
                                                      batch_gt_instances_ignore[i])
            sampling_results.append(self.bbox_sampler.sample(
                assign_result, rpn_results, batch_gt_instances[i],
                feats=[lvl_feat[i][None] for lvl_feat in x]))
        losses = dict()
        bbox_results = self.bbox_loss(x, sampling_results)
        losses.update(bbox_results['loss_bbox'])
        losses.update(self.dense_loss(x, sampling_results, batch_gt_instances, batch_img_metas))
        return losses

    def dense_loss(self, x, sampling_results, batch_gt_instances, batch_img_metas):
        """The dense-regression (and instance-mask) losses on jittered positive RoIs."""
        boxes, gts, labels, inds, images = [], [], [], [], []
        for i, (res, meta) in enumerate(zip(sampling_results, batch_img_metas)):
            pos = res.pos_priors
            offsets = pos.new_empty(pos.shape[0], 4).uniform_(-self.jitter_amplitude,
                                                              self.jitter_amplitude)
            boxes.append(jitter_boxes(pos, offsets, meta['img_shape'][:2]))
            gts.append(res.pos_gt_bboxes)
            labels.append(res.pos_gt_labels)
            inds.append(res.pos_assigned_gt_inds)
            images.append(torch.full_like(res.pos_assigned_gt_inds, i))
        reg_feats = self._reg_features(x, boxes)
        boxes, gts = torch.cat(boxes), torch.cat(gts)
        labels, inds, images = torch.cat(labels).long(), torch.cat(inds), torch.cat(images)
        max_num = (self.train_cfg or {}).get('max_num_reg', self.max_num_reg)
        idx = sample_regression_rois(reg_feats.shape[0], max_num, reg_feats.device)
        masks = ratios = None
        if self.with_mask:
            masks = self._mask_targets(sampling_results, boxes, inds, images,
                                       batch_gt_instances)
            ratios = self._area_ratios(boxes, inds, images, batch_gt_instances)
        return dense_losses(self.d2det_head, reg_feats, boxes, gts, labels, idx, masks, ratios,
                            self.loss_weights, self.release_broadcast, self.box_plus_one)

    def _mask_targets(self, sampling_results, boxes, inds, images, batch_gt_instances):
        """(N, M, M) mask targets of the jittered RoIs (mmdet's crop-and-resize)."""
        size = 4 * self.map_size
        out = boxes.new_zeros(boxes.shape[0], size, size)
        for i, gt in enumerate(batch_gt_instances):  # one iteration per image
            if 'masks' not in gt:
                raise KeyError('the D2Det instance variant needs gt_instances.masks: load '
                               "annotations with dict(type='LoadAnnotations', with_mask=True)")
            sel = (images == i).nonzero(as_tuple=False).squeeze(1)
            if sel.numel() == 0:
                continue
            target = gt.masks.crop_and_resize(boxes[sel].detach().cpu().numpy(), (size, size),
                                              inds=inds[sel].cpu().numpy(), device=boxes.device)
            out[sel] = torch.as_tensor(target.to_ndarray(), dtype=out.dtype, device=out.device)
        return out

    def _area_ratios(self, boxes, inds, images, batch_gt_instances):
        ratios = boxes.new_zeros(boxes.shape[0])
        for i, gt in enumerate(batch_gt_instances):  # one iteration per image
            sel = (images == i).nonzero(as_tuple=False).squeeze(1)
            if sel.numel() == 0:
                continue
            masks = gt.masks.to_tensor(dtype=torch.bool, device=boxes.device)
            ratios[sel] = mask_area_ratios(boxes[sel], masks, inds[sel])
        return ratios

    # ----------------------------------------------------------------- inference
    def predict(self, x, rpn_results_list, batch_data_samples, rescale=False):
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        results_list = self.predict_bbox(x, batch_img_metas, rpn_results_list,
                                         rcnn_test_cfg=self.test_cfg, rescale=False)
        boxes = [r.bboxes for r in results_list]
        if sum(len(b) for b in boxes) == 0:
            task = 'mask' if self.with_mask else 'bbox'
            return empty_instances(batch_img_metas, x[0].device, task_type=task,
                                   instance_results=results_list)
        refined = refine_boxes(self.d2det_head, self._reg_features(x, boxes),
                               torch.cat(boxes)).split([len(b) for b in boxes])
        out = []
        for res, ref, meta in zip(results_list, refined, batch_img_metas):
            if self.clip_refined:
                h, w = meta['img_shape'][:2]
                ref = torch.stack([ref[:, 0].clamp(0, w), ref[:, 1].clamp(0, h),
                                   ref[:, 2].clamp(0, w), ref[:, 3].clamp(0, h)], 1)
            res.bboxes = ref
            if not self.with_mask and len(ref):
                dets, keep = batched_nms(ref, res.scores, res.labels,
                                         dict(type='soft_nms', iou_threshold=self.soft_nms_iou,
                                              min_score=0.0))
                res = res[keep]
                res.scores = dets[:, -1]
                res = res[:self.test_cfg.max_per_img]
            out.append(res)
        if self.with_mask:
            out = self.predict_masks(x, out, batch_img_metas, rescale)
        elif rescale:
            for res, meta in zip(out, batch_img_metas):
                res.bboxes = res.bboxes / res.bboxes.new_tensor(meta['scale_factor']).repeat(2)
        return out

    def predict_masks(self, x, results_list, batch_img_metas, rescale):
        """Instance variant: the head on the refined boxes, masks pasted, mask scores."""
        boxes = [r.bboxes for r in results_list]
        labels = torch.cat([r.labels for r in results_list]).long()
        scores = torch.cat([r.scores for r in results_list])
        probs, mscores = instance_masks(self.d2det_head, self._reg_features(x, boxes), labels,
                                        scores, self.mask_score_weight)
        probs = probs.split([len(b) for b in boxes])
        mscores = mscores.split([len(b) for b in boxes])
        threshold = self.test_cfg.get('mask_thr_binary', 0.5)
        for res, prob, mscore, meta in zip(results_list, probs, mscores, batch_img_metas):
            h, w = meta['ori_shape'][:2] if rescale else meta['img_shape'][:2]
            if rescale:
                res.bboxes = res.bboxes / res.bboxes.new_tensor(meta['scale_factor']).repeat(2)
            res.masks = paste_masks_in_boxes(prob, res.bboxes, h, w, threshold)
            res.mask_scores = mscore
        return results_list
