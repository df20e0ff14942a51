"""``RefineRoIHead``: mmdet 3.x ``StandardRoIHead`` that feeds RefineMask's head.

Differences from ``StandardRoIHead``: the mask head also reads the finest FPN level (semantic
branch) and the RoIs' labels; the mask loss needs the whole-image GT masks (semantic target);
test-time masks are the boundary-aware merge of the stage outputs.
"""
import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.utils import empty_instances
from mmdet.structures.bbox import bbox2roi

from insplug.registry import MODELS

# RoIs run through the mask head at once at test time (bounds memory at 112 x 112)
TEST_ROIS_PER_CHUNK = 100


@MODELS.register_module()
class RefineRoIHead(StandardRoIHead):
    """Box head as in ``StandardRoIHead``; mask head: a :class:`RefineMaskHead`."""

    def init_mask_head(self, mask_roi_extractor, mask_head):
        if mask_roi_extractor is None:
            raise ValueError('RefineRoIHead needs its own mask_roi_extractor (RoIAlign, '
                             'output_size=14): sharing the box extractor is not supported')
        super().init_mask_head(mask_roi_extractor, mask_head)
        if not hasattr(self.mask_head, 'forward_instances'):
            raise TypeError(f'RefineRoIHead needs a RefineMaskHead mask_head, got '
                            f'{type(self.mask_head).__name__}')

    def _semantic_input(self, x):
        """The finest FPN level, or all levels for a multi-level semantic branch."""
        return tuple(x) if self.mask_head.semantic_multi_level else x[0]

    def _mask_forward(self, x, rois=None, labels=None, pos_inds=None, bbox_feats=None):
        """Stage logits (list of (N, S_k, S_k)) and semantic logits (B, Hf, Wf) for ``rois``."""
        if rois is None:
            raise ValueError('RefineRoIHead._mask_forward needs rois')
        if labels is None:  # tensor-mode forward without classes
            labels = rois.new_zeros(rois.shape[0], dtype=torch.long)
        roi_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
        stage_logits, semantic_logits = self.mask_head(roi_feats, self._semantic_input(x), rois,
                                                       labels)
        return dict(stage_logits=stage_logits, semantic_logits=semantic_logits,
                    mask_preds=stage_logits[-1], mask_feats=roi_feats)

    def mask_loss(self, x, sampling_results, bbox_feats, batch_gt_instances):
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        labels = torch.cat([res.pos_gt_labels for res in sampling_results]).long()
        mask_results = self._mask_forward(x, pos_rois, labels)
        loss_and_target = self.mask_head.loss_and_target(
            mask_results['stage_logits'], mask_results['semantic_logits'], sampling_results,
            batch_gt_instances, self.train_cfg)
        mask_results.update(loss_mask=loss_and_target['loss_mask'])
        return mask_results

    def predict_mask(self, x, batch_img_metas, results_list, rescale=False):
        bboxes = [res.bboxes for res in results_list]
        mask_rois = bbox2roi(bboxes)
        if mask_rois.shape[0] == 0:
            return empty_instances(batch_img_metas, mask_rois.device, task_type='mask',
                                   instance_results=results_list,
                                   mask_thr_binary=self.test_cfg.mask_thr_binary)
        labels = torch.cat([res.labels for res in results_list]).long()
        semantic_feats, semantic_logits = self.mask_head.forward_semantic(
            self._semantic_input(x))
        logits = []
        for start in range(0, mask_rois.shape[0], TEST_ROIS_PER_CHUNK):  # chunks of RoIs
            rois = mask_rois[start:start + TEST_ROIS_PER_CHUNK]
            roi_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
            stage_logits = self.mask_head.forward_instances(
                roi_feats, semantic_feats, semantic_logits, rois,
                labels[start:start + TEST_ROIS_PER_CHUNK])
            logits.append(self.mask_head.test_logits(stage_logits))
        logits = torch.cat(logits).split([len(b) for b in bboxes], 0)
        return self.mask_head.predict_by_feat(logits, results_list, batch_img_metas,
                                              self.test_cfg, rescale=rescale)
