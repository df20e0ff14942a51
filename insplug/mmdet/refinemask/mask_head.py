"""``RefineMaskHead``: :class:`insplug.core.refinemask.RefineMaskNet` with mmdet 3.x's mask-head
interface (``loss_and_target``, ``predict_by_feat``).

Only the mmdet data handling lives here (``SamplingResult``, ``InstanceData``, ``BitmapMasks`` /
``PolygonMasks``, image metas); the network, losses and pasting are in ``insplug.core``.
"""
import numpy as np
import torch
from mmdet.models.utils import empty_instances

from insplug.core.refinemask import (RefineMaskNet, paste_masks_in_image, refine_stage_logits,
                                     refinement_loss, semantic_loss, semantic_target)
from insplug.registry import MODELS


@MODELS.register_module()
class RefineMaskHead(RefineMaskNet):
    """RefineMask mask head (use with :class:`RefineRoIHead`).

    Args (beyond :class:`RefineMaskNet`'s, names as in the official release):
        stage_instance_loss_weight: weight of each stage's loss (official 0.25, 0.5, 0.75, 1.0).
        semantic_loss_weight: weight of the semantic foreground loss (official 1.0).
        boundary_width: band width of the boundary-aware refinement loss (official 2).
        start_stage: stages 0..start_stage are trained on the whole RoI (official 1).
        test_start_stage: the first stage merged at test time (official 1, 28 x 28).
        semantic_branch: optional MODELS config of a module replacing the semantic branch
            (see :class:`RefineMaskNet`), e.g. ``dict(type='UPerNetSemanticBranch', ...)``.
        init_cfg: accepted for mmengine compatibility; weights are initialised on construction.
    """

    def __init__(self, num_classes=80, stage_instance_loss_weight=(0.25, 0.5, 0.75, 1.0),
                 semantic_loss_weight=1.0, boundary_width=2, start_stage=1, test_start_stage=1,
                 init_cfg=None, semantic_branch=None, **net_args):
        if isinstance(semantic_branch, dict):
            semantic_branch = MODELS.build(semantic_branch)
        super().__init__(num_classes=num_classes, semantic_branch=semantic_branch, **net_args)
        if len(stage_instance_loss_weight) != len(self.stage_sup_size):
            raise ValueError(f'stage_instance_loss_weight {list(stage_instance_loss_weight)} '
                             f'needs one weight per stage_sup_size entry {self.stage_sup_size}')
        if not 0 <= test_start_stage < len(self.stage_sup_size):
            raise ValueError(f'test_start_stage {test_start_stage} is not a stage index')
        self.stage_instance_loss_weight = list(stage_instance_loss_weight)
        self.semantic_loss_weight = semantic_loss_weight
        self.boundary_width = boundary_width
        self.start_stage = start_stage
        self.test_start_stage = test_start_stage

    # ---------------------------------------------------------------- training
    def get_targets(self, sampling_results, batch_gt_instances, semantic_size):
        """Mask targets of every stage and the semantic target.

        Args:
            sampling_results: list of B ``SamplingResult``.
            batch_gt_instances: list of B ``InstanceData`` with ``masks``.
            semantic_size: (Hf, Wf) of the semantic logits.

        Returns:
            stage_targets: list of K (N, S_k, S_k) float; semantic: (B, Hf, Wf) float.
        """
        device = sampling_results[0].pos_priors.device
        per_stage = [[] for _ in self.stage_sup_size]
        image_masks = []
        for res, gt in zip(sampling_results, batch_gt_instances):  # one iteration per image
            if 'masks' not in gt:
                raise KeyError('RefineMaskHead needs gt_instances.masks: load annotations with '
                               "dict(type='LoadAnnotations', with_bbox=True, with_mask=True)")
            masks = gt.masks
            image_masks.append(masks.to_tensor(dtype=torch.bool, device=device))
            boxes = res.pos_priors.detach().cpu().numpy().copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, masks.width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, masks.height)
            inds = res.pos_assigned_gt_inds.cpu().numpy()
            for k, size in enumerate(self.stage_sup_size):
                if len(boxes) == 0:
                    per_stage[k].append(torch.zeros(0, size, size, device=device))
                    continue
                target = masks.crop_and_resize(boxes, (size, size), inds=inds, device=device)
                per_stage[k].append(torch.as_tensor(target.to_ndarray(), dtype=torch.float32,
                                                    device=device))
        stage_targets = [torch.cat(targets) for targets in per_stage]
        semantic = semantic_target(image_masks, semantic_size, self.semantic_out_stride)
        return stage_targets, semantic

    def loss_and_target(self, stage_logits, semantic_logits, sampling_results,
                        batch_gt_instances, rcnn_train_cfg=None):
        """Returns dict(loss_mask=dict(loss_instance, loss_semantic), mask_targets=[...])."""
        stage_targets, semantic = self.get_targets(sampling_results, batch_gt_instances,
                                                   semantic_logits.shape[-2:])
        loss_instance = refinement_loss(stage_logits, stage_targets,
                                        self.stage_instance_loss_weight, self.boundary_width,
                                        self.start_stage)
        loss_semantic = self.semantic_loss_weight * semantic_loss(semantic_logits, semantic)
        return dict(loss_mask=dict(loss_instance=loss_instance, loss_semantic=loss_semantic),
                    mask_targets=stage_targets)

    # --------------------------------------------------------------- inference
    def test_logits(self, stage_logits):
        """The boundary-aware merged test-time logits (N, S_K, S_K)."""
        return refine_stage_logits(stage_logits, self.test_start_stage)

    def predict_by_feat(self, mask_preds, results_list, batch_img_metas, rcnn_test_cfg,
                        rescale=False, activate_map=False):
        """Paste each image's (n, S, S) mask logits into its image as ``results.masks``.

        Follows ``FCNMaskHead.predict_by_feat``: with ``rescale`` the boxes (divided in place by
        the scale factor) and masks are in the original image, else in the resized image.
        """
        threshold = rcnn_test_cfg.mask_thr_binary
        for img_id, (logits, meta) in enumerate(zip(mask_preds, batch_img_metas)):
            results = results_list[img_id]
            bboxes = results.bboxes
            if bboxes.shape[0] == 0:
                results_list[img_id] = empty_instances(
                    [meta], bboxes.device, task_type='mask', instance_results=[results],
                    mask_thr_binary=threshold)[0]
                continue
            scale = bboxes.new_tensor(meta['scale_factor']).repeat(2)[None]
            img_h, img_w = meta['ori_shape'][:2]
            if rescale:
                bboxes /= scale
            else:
                img_h = int(np.round(img_h * scale[0, 1].item()))
                img_w = int(np.round(img_w * scale[0, 0].item()))
            probs = logits if activate_map else logits.sigmoid()
            results.masks = paste_masks_in_image(probs, bboxes, img_h, img_w, threshold)
        return results_list
