"""CenterMask detector: FCOS (``bbox_head``) proposes boxes, ``roi_head`` segments them."""
import torch
from mmdet.models.detectors import SingleStageDetector
from mmdet.models.utils import unpack_gt_instances

from insplug.mmdet.fcos.head import FaithfulFCOSHead
from insplug.registry import MODELS


@MODELS.register_module()
class CenterMask(SingleStageDetector):
    """Backbone + FPN + FCOS head + :class:`CenterMaskRoIHead` (centermask2's
    ``GeneralizedRCNN`` with the ``FCOS`` proposal generator and ``CenterROIHeads``).

    ``train_cfg.proposal`` (FCOS post-processing in training: centermask2 keeps the top 100
    after NMS 0.6, threshold 0.05, 1000 candidates per level) gives the proposals whose
    positives train the mask head; ``test_cfg`` (top 50) gives the detections to segment.
    Boxes reach the RoI head unclipped; they are clipped when the masks are pasted.
    """

    def __init__(self, backbone, neck, bbox_head, roi_head, train_cfg=None, test_cfg=None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(backbone, neck, bbox_head, train_cfg, test_cfg, data_preprocessor,
                         init_cfg)
        if not isinstance(self.bbox_head, FaithfulFCOSHead):
            # centermask2 decodes its training proposals from the stride-normalised regression
            # multiplied back by the stride; FaithfulFCOSHead.predict_by_feat does exactly that
            raise TypeError(f'CenterMask: bbox_head must be a FaithfulFCOSHead (centermask2\'s '
                            f'FCOS), got {type(self.bbox_head).__name__}')
        self.roi_head = MODELS.build(roi_head)

    def loss(self, batch_inputs, batch_data_samples):
        x = self.extract_feat(batch_inputs)
        outs = self.bbox_head(x)
        gts, gts_ignore, metas = unpack_gt_instances(batch_data_samples)
        losses = self.bbox_head.loss_by_feat(outs[0], outs[1], outs[2], batch_gt_instances=gts,
                                             batch_img_metas=metas,
                                             batch_gt_instances_ignore=gts_ignore)
        proposal_cfg = (self.train_cfg or {}).get('proposal', self.test_cfg)
        with torch.no_grad():  # RoIAlign passes no gradient to boxes anyway
            proposals = self.bbox_head.predict_by_feat(
                [c.detach() for c in outs[0]],
                [b.detach() for b in outs[1]],
                score_factors=[c.detach() for c in outs[2]], batch_img_metas=metas,
                cfg=proposal_cfg, rescale=False)
        losses.update(self.roi_head.loss(x, proposals, batch_data_samples))
        return losses

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        x = self.extract_feat(batch_inputs)
        results = self.bbox_head.predict(x, batch_data_samples, rescale=False)
        metas = [s.metainfo for s in batch_data_samples]
        results = self.roi_head.predict(x, results, metas, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)
