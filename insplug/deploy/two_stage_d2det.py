"""Traceable full-model export of D2Det (instance variant): :class:`TwoStageFull` with D2Det's
RoI pooling, its dense local regression and its instance masks.

Shapes: K = the R-CNN ``max_per_img`` detection slots; S x S the box head's pooled size (7);
R x R the regression head's RoIAlign size (14); M the instance mask side (28).

What differs from :class:`TwoStageFull` (each the step of
:class:`insplug.mmdet.d2det.D2DetStandardRoIHead` it mirrors):

* box-head features: every RoI goes through every level's
  :class:`insplug.core.d2det.DiscriminativeRoIPool` (pure PyTorch: grid-sample reads, the offset
  predictor, the adaptive-weighted pooling) and the level of
  :func:`insplug.core.d2det.roi_levels` is selected by a one-hot sum, instead of a Python branch
  per level (:func:`insplug.core.d2det.pool_levels` runs a level only when it has RoIs);
* the box head has no regression (``with_reg=False``): each class keeps the proposal box, as
  mmdet's ``predict_by_feat`` does without ``bbox_pred``;
* on the K slots: the regression head's features (mmcv ``RoIAlign`` 14 x 14 as torchvision's
  ``roi_align``, with mmdet 1.x's ``+1`` on x2, y2 and its level mapping), the averaged dense
  box (:func:`insplug.core.d2det.refine_boxes`), clipped to the image; then the head again on
  the refined boxes for the own-class mask and the mask score ``score + 0.3 * IoU``
  (:func:`insplug.core.d2det.instance_masks`), pasted at the refined boxes.

The graph adds a ``mask_scores`` output (K,): the score COCO segm evaluation ranks masks by.
"""
import torch
from torch import Tensor
from insplug.core.d2det import instance_masks, refine_boxes, roi_levels

from .two_stage import (TwoStageFull, clip_boxes, paste_whole_image, pool_levels_one_hot,
                        torchvision_roi_aligns)


def supports_d2det(model) -> bool:
    """True for an mmdet ``RPNHead`` + insplug ``D2DetStandardRoIHead`` with the instance head,
    discriminative pooling for the box head and an mmcv RoIAlign for the regression head."""
    roi_head = getattr(model, 'roi_head', None)
    rpn = getattr(model, 'rpn_head', None)
    if type(roi_head).__name__ != 'D2DetStandardRoIHead' or type(rpn).__name__ != 'RPNHead':
        return False
    bbox_ext, reg_ext = roi_head.bbox_roi_extractor, roi_head.reg_roi_extractor
    return (roi_head.with_mask and not roi_head.bbox_head.with_reg
            and type(rpn.bbox_coder).__name__ == 'DeltaXYWHBBoxCoder'
            and type(bbox_ext.roi_layers[0]).__name__ == 'DiscriminativeRoIPool'
            and type(reg_ext.roi_layers[0]).__name__ == 'RoIAlign')


class D2DetFull(TwoStageFull):
    """D2Det (instance variant), pre-processing to final instances, for one (1, 3, H, W) BGR
    image. Outputs: :class:`TwoStageFull`'s, then ``mask_scores`` (K,) float32."""

    output_names = TwoStageFull.output_names + ['mask_scores']
    supports = staticmethod(supports_d2det)

    def pool_bbox_rois(self, extractor, feats, rois: Tensor) -> Tensor:
        levels = extractor.map_roi_levels(rois, len(feats))
        return pool_levels_one_hot(extractor.roi_layers, feats, rois, levels)

    def class_boxes(self, proposals: Tensor, bbox_pred, num_classes: int) -> Tensor:
        # no box regression: the (already clipped) proposal for every class
        height, width = self.shape
        boxes = clip_boxes(proposals, height, width)
        return boxes[:, None].expand(-1, num_classes, 4).reshape(-1, 4)

    def regression_features(self, feats, boxes: Tensor) -> Tensor:
        """(K, 4) boxes -> (K, C, R, R): ``DiscriminativeRoIExtractor`` with an mmcv RoIAlign
        (mmdet 1.x: level of ``sqrt((w + 1) (h + 1))``, the RoI spans ``x1 .. x2 + 1``)."""
        extractor = self.model.roi_head.reg_roi_extractor
        feats = feats[:extractor.num_inputs]
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)
        levels = roi_levels(rois, len(feats), extractor.finest_scale, extractor.legacy_plus_one)
        if extractor.legacy_plus_one:
            rois = torch.cat([rois[:, :3], rois[:, 3:5] + 1], 1)
        return pool_levels_one_hot(torchvision_roi_aligns(extractor.roi_layers[:len(feats)]),
                                   feats, rois, levels)

    def forward(self, image: Tensor):
        feats = self.model.extract_feat(self.preprocess(image))
        cls_scores, bbox_preds = self.model.rpn_head(feats)
        proposals, rpn_cls, rpn_reg = self.proposals(cls_scores, bbox_preds)
        scores, labels, boxes, valid = self.detections(feats, proposals)
        roi_head = self.model.roi_head
        head = roi_head.d2det_head
        boxes = refine_boxes(head, self.regression_features(feats, boxes), boxes)
        if roi_head.clip_refined:
            boxes = clip_boxes(boxes, *self.shape)
        probs, mask_scores = instance_masks(head, self.regression_features(feats, boxes), labels,
                                            scores, roi_head.mask_score_weight)
        probs = paste_whole_image(probs, boxes, *self.shape)
        masks = probs >= self.mask_thr
        outs = (scores, labels, masks, boxes, valid, rpn_cls, rpn_reg, mask_scores)
        return outs + (probs,) if self.return_probs else outs
