"""CenterMask detector: FCOS (``bbox_head``) proposes boxes, ``roi_head`` segments them."""
from mmdet.models.detectors import SingleStageDetector

from insplug.registry import MODELS


@MODELS.register_module()
class CenterMask(SingleStageDetector):
    """Backbone + FPN + FCOS head + :class:`CenterMaskRoIHead`.

    ``train_cfg.proposal`` (FCOS post-processing in training: CenterMask2 keeps the top 100
    after NMS 0.6) gives the proposals whose positives train the mask head.
    """

    def __init__(self, backbone, neck, bbox_head, roi_head, train_cfg=None, test_cfg=None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(backbone, neck, bbox_head, train_cfg, test_cfg, data_preprocessor,
                         init_cfg)
        self.roi_head = MODELS.build(roi_head)

    def loss(self, batch_inputs, batch_data_samples):
        x = self.extract_feat(batch_inputs)
        proposal_cfg = (self.train_cfg or {}).get('proposal', self.test_cfg)
        losses, proposals = self.bbox_head.loss_and_predict(x, batch_data_samples,
                                                            proposal_cfg=proposal_cfg)
        losses.update(self.roi_head.loss(x, proposals, batch_data_samples))
        return losses

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        x = self.extract_feat(batch_inputs)
        results = self.bbox_head.predict(x, batch_data_samples, rescale=False)
        metas = [s.metainfo for s in batch_data_samples]
        results = self.roi_head.predict(x, results, metas, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)
