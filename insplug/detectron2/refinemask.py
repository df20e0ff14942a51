"""RefineMask for detectron2: ``RefineMaskHead`` (ROI_MASK_HEAD_REGISTRY) and
``RefineMaskROIHeads`` (ROI_HEADS_REGISTRY), with the semantic branch.

Shapes: B images; N RoIs (foreground proposals in training, detections at test time);
stage sides S_0..S_K (14, 28, 56, 112); (h_i, w_i) the un-padded input size of image i.

Only detectron2's data handling lives here (``Instances``, ``Boxes``, ``PolygonMasks`` /
``BitMasks``); the network, losses and boundary-aware merging are
:mod:`insplug.core.refinemask`, shared with the mmdet adapter. Test-time masks follow
detectron2's convention: ``pred_masks`` holds (N, 1, S_K, S_K) probabilities that
``detector_postprocess`` pastes into the image.

yacs::

    MODEL.ROI_HEADS.NAME: RefineMaskROIHeads
    MODEL.ROI_MASK_HEAD.NAME: RefineMaskHead      # POOLER_RESOLUTION 14, ROIAlignV2
    MODEL.INSPLUG.REFINEMASK.*                     # see insplug.detectron2.config
"""
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Instances

from insplug.core.refinemask import (RefineMaskNet, refine_stage_logits, refinement_loss,
                                     semantic_loss, semantic_target)

from .config import REFINEMASK_TRAINING_DEFAULTS
from .masks import instances_mask_tensor

# RoIs run through the mask network at once at test time (bounds memory at 112 x 112)
TEST_ROIS_PER_CHUNK = 100


@ROI_MASK_HEAD_REGISTRY.register()
class RefineMaskHead(RefineMaskNet):
    """:class:`insplug.core.refinemask.RefineMaskNet` with detectron2 targets and outputs.

    Args (beyond :class:`RefineMaskNet`'s):
        stage_instance_loss_weight: weight of each stage's loss (official 0.25, 0.5, 0.75, 1).
        semantic_loss_weight: weight of the semantic foreground loss (official 1.0).
        boundary_width: band width of the boundary-aware loss (official 2).
        start_stage: stages 0..start_stage are trained on the whole RoI (official 1).
        test_start_stage: first stage merged at test time (official 1, 28 x 28).
    """

    @configurable
    def __init__(self, *, num_classes: int,
                 stage_instance_loss_weight=REFINEMASK_TRAINING_DEFAULTS[
                     'stage_instance_loss_weight'],
                 semantic_loss_weight: float = REFINEMASK_TRAINING_DEFAULTS[
                     'semantic_loss_weight'],
                 boundary_width: int = 2, start_stage: int = 1, test_start_stage: int = 1,
                 **net_args):
        super().__init__(num_classes=num_classes, **net_args)
        if len(stage_instance_loss_weight) != len(self.stage_sup_size):
            raise ValueError(f'STAGE_INSTANCE_LOSS_WEIGHT {list(stage_instance_loss_weight)} '
                             f'needs one weight per STAGE_SUP_SIZE entry {self.stage_sup_size}')
        if not 0 <= test_start_stage < len(self.stage_sup_size):
            raise ValueError(f'TEST_START_STAGE {test_start_stage} is not a stage index of '
                             f'STAGE_SUP_SIZE {self.stage_sup_size}')
        self.stage_instance_loss_weight = list(stage_instance_loss_weight)
        self.semantic_loss_weight = semantic_loss_weight
        self.boundary_width = boundary_width
        self.start_stage = start_stage
        self.test_start_stage = test_start_stage

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        r = cfg.MODEL.INSPLUG.REFINEMASK
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        if len(r.STAGE_CLASS_AGNOSTIC) != len(r.STAGE_SUP_SIZE):
            raise ValueError(f'MODEL.INSPLUG.REFINEMASK.STAGE_CLASS_AGNOSTIC '
                             f'{list(r.STAGE_CLASS_AGNOSTIC)} needs one flag per STAGE_SUP_SIZE '
                             f'entry {list(r.STAGE_SUP_SIZE)}')
        return dict(
            num_classes=num_classes,
            stage_num_classes=[1 if agnostic else num_classes
                               for agnostic in r.STAGE_CLASS_AGNOSTIC],
            stage_sup_size=list(r.STAGE_SUP_SIZE),
            num_convs_instance=r.NUM_CONVS_INSTANCE,
            conv_in_channels_instance=input_shape.channels,
            conv_out_channels_instance=r.CONV_OUT_CHANNELS_INSTANCE,
            num_convs_semantic=r.NUM_CONVS_SEMANTIC,
            # the semantic branch reads an FPN level, which has the RoI features' channels
            conv_in_channels_semantic=input_shape.channels,
            conv_out_channels_semantic=r.CONV_OUT_CHANNELS_SEMANTIC,
            dilations=list(r.DILATIONS),
            stage_instance_loss_weight=list(r.STAGE_INSTANCE_LOSS_WEIGHT),
            semantic_loss_weight=r.SEMANTIC_LOSS_WEIGHT,
            boundary_width=r.BOUNDARY_WIDTH,
            start_stage=r.START_STAGE,
            test_start_stage=r.TEST_START_STAGE,
        )

    # ---------------------------------------------------------------- training
    def stage_targets(self, instances: List[Instances]):
        """Per-stage mask targets of the foreground proposals.

        Returns:
            list of K (N, S_k, S_k) float tensors.
        """
        device = self.final_logits.weight.device
        per_stage = [[] for _ in self.stage_sup_size]
        for inst in instances:  # one iteration per image
            for k, size in enumerate(self.stage_sup_size):
                if len(inst) == 0:
                    per_stage[k].append(torch.zeros((0, size, size), device=device))
                    continue
                if not inst.has('gt_masks'):
                    raise KeyError('RefineMaskHead needs gt_masks on the proposals: the dataset '
                                   'must have "segmentation" and MODEL.MASK_ON must be True')
                target = inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, size)
                per_stage[k].append(target.to(device=device, dtype=torch.float32))
        return [torch.cat(targets) for targets in per_stage]

    def losses(self, stage_logits, semantic_logits, instances, targets):
        """``loss_mask`` (boundary-aware refinement) and ``loss_semantic``.

        Args:
            stage_logits: K (N, S_k, S_k); semantic_logits: (B, Hf, Wf).
            instances: B foreground proposals (``proposal_boxes``, ``gt_masks``).
            targets: B ground-truth ``Instances`` (``gt_masks``) of the whole images.
        """
        stage_targets = self.stage_targets(instances)
        device = semantic_logits.device
        image_masks = [instances_mask_tensor(t, device) for t in targets]
        semantic = semantic_target(image_masks, semantic_logits.shape[-2:],
                                   self.semantic_out_stride)
        loss_instance = refinement_loss(stage_logits, stage_targets,
                                        self.stage_instance_loss_weight, self.boundary_width,
                                        self.start_stage)
        return dict(loss_mask=loss_instance,
                    loss_semantic=self.semantic_loss_weight * semantic_loss(semantic_logits,
                                                                            semantic))

    # --------------------------------------------------------------- inference
    def test_logits(self, roi_feats, semantic_feats, semantic_logits, rois, labels):
        """Boundary-aware merged logits (N, S_K, S_K), computed in chunks of RoIs."""
        merged = []
        for start in range(0, rois.shape[0], TEST_ROIS_PER_CHUNK):  # chunks, not instances
            sl = slice(start, start + TEST_ROIS_PER_CHUNK)
            stage_logits = self.forward_instances(roi_feats[sl], semantic_feats,
                                                  semantic_logits, rois[sl], labels[sl])
            merged.append(refine_stage_logits(stage_logits, self.test_start_stage))
        if not merged:
            size = self.stage_sup_size[-1]
            return roi_feats.new_zeros((0, size, size))
        return torch.cat(merged)

    def forward(self, roi_feats, finest_feats, instances: List[Instances],
                targets: Optional[List[Instances]] = None):
        """
        Args:
            roi_feats: (N, C, S_0, S_0) pooled features of ``instances``' boxes.
            finest_feats: (B, C, Hf, Wf), the semantic branch's input (FPN p2).
            instances: B ``Instances``: foreground proposals (training) or detections.
            targets: B ground-truth ``Instances`` (training only).

        Returns:
            training: dict of losses; inference: ``instances`` with ``pred_masks``
            (n_i, 1, S_K, S_K) probabilities.
        """
        boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
        rois = convert_boxes_to_pooler_format(boxes)
        classes = [x.gt_classes if self.training else x.pred_classes for x in instances]
        labels = torch.cat(classes).long() if classes else rois.new_zeros(0, dtype=torch.long)
        semantic_feats, semantic_logits = self.forward_semantic(finest_feats)
        if self.training:
            stage_logits = self.forward_instances(roi_feats, semantic_feats, semantic_logits,
                                                  rois, labels)
            return self.losses(stage_logits, semantic_logits, instances, targets)
        probs = self.test_logits(roi_feats, semantic_feats, semantic_logits, rois,
                                 labels).sigmoid()[:, None]
        for inst, masks in zip(instances, probs.split([len(x) for x in instances])):
            inst.pred_masks = masks
        return instances


@ROI_HEADS_REGISTRY.register()
class RefineMaskROIHeads(StandardROIHeads):
    """``StandardROIHeads`` feeding a :class:`RefineMaskHead`: the mask head also reads the
    finest feature map (``semantic_in_feature``) and, in training, the whole-image GT masks.

    Args (beyond ``StandardROIHeads``'):
        semantic_in_feature: name of the semantic branch's input map (FPN 'p2', stride 4).
    """

    @configurable
    def __init__(self, *, semantic_in_feature: str = 'p2', **kwargs):
        super().__init__(**kwargs)
        if not self.mask_on or self.mask_pooler is None:
            raise ValueError('RefineMaskROIHeads needs a mask head with its own RoI pooler: set '
                             'MODEL.MASK_ON: True and ROI_MASK_HEAD.POOLER_TYPE (ROIAlignV2)')
        if not isinstance(self.mask_head, RefineMaskNet):
            raise TypeError(f'RefineMaskROIHeads needs MODEL.ROI_MASK_HEAD.NAME: RefineMaskHead, '
                            f'got {type(self.mask_head).__name__}')
        self.semantic_in_feature = semantic_in_feature

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        name = cfg.MODEL.INSPLUG.REFINEMASK.SEMANTIC_IN_FEATURE
        if name not in input_shape:
            raise ValueError(f'MODEL.INSPLUG.REFINEMASK.SEMANTIC_IN_FEATURE {name!r} is not a '
                             f'backbone output {sorted(input_shape)}')
        head = ret.get('mask_head')
        if head is not None and head.semantic_out_stride != input_shape[name].stride:
            raise ValueError(f'{name!r} has stride {input_shape[name].stride} but the RefineMask '
                             f'semantic branch assumes {head.semantic_out_stride}: use the '
                             'stride-4 FPN level (p2)')
        ret['semantic_in_feature'] = name
        weight = cfg.MODEL.INSPLUG.REFINEMASK.BOX_CLS_LOSS_WEIGHT
        ret['box_predictor'].loss_weight = dict(ret['box_predictor'].loss_weight,
                                                loss_cls=weight)
        return ret

    def forward(self, images, features, proposals, targets=None):
        """As ``StandardROIHeads.forward``, passing ``targets`` on to the mask branch."""
        del images
        if not self.training:
            pred_instances = self._forward_box(features, proposals)
            return self.forward_with_given_boxes(features, pred_instances), {}
        if not targets:
            raise ValueError('RefineMaskROIHeads needs the ground-truth targets in training')
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box(features, proposals)
        losses.update(self._forward_mask(features, proposals, targets))
        losses.update(self._forward_keypoint(features, proposals))
        return proposals, losses

    def _forward_mask(self, features, instances, targets=None):
        """Training: dict of mask losses; inference: ``instances`` with ``pred_masks``."""
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
        boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
        roi_feats = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        return self.mask_head(roi_feats, features[self.semantic_in_feature], instances,
                              targets)
