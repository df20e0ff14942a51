"""SOLO and SOLOv2 for detectron2: ``InsplugSOLO`` and ``InsplugSOLOv2`` (META_ARCH_REGISTRY).

``InsplugSOLO`` (vanilla or decoupled head, :class:`insplug.core.solo.SOLOInstanceBranch`;
``MODEL.INSPLUG.SOLO.*``, WXinlong/SOLO's settings) pads the gt masks to the batch as the
mmdet releases do; the rest of this docstring describes ``InsplugSOLOv2``.

Shapes: B images; L = 5 instance levels (P2-P6); K classes; E kernel / mask-feature channels;
S_l grid of level l; (Hp, Wp) the padded batch input; (h, w) = (Hp, Wp) / 4 the mask features.

backbone (ResNet-FPN, P2-P6) -> :class:`insplug.core.solo.SOLOv2InstanceBranch` (``ins_head``:
category grid + dynamic kernels) and :class:`insplug.core.solo.MaskFeatBranch` (``mask_head``:
unified mask features from P2-P5); training calls :func:`insplug.core.solo.solo_targets_single`
on the un-padded gt bitmasks (as AdelaiDet) and :func:`insplug.core.solo.solov2_losses`,
inference :func:`insplug.core.solo.solov2_inference_single` (Matrix NMS). Results are
``Instances`` at the original size with ``pred_masks`` (bool), ``pred_boxes`` (the masks' tight
boxes; AdelaiDet returns zero boxes), ``scores`` and ``pred_classes``.

AdelaiDet registers ``SOLOv2`` in the same registry, hence the ``Insplug`` prefix. Official
checkpoints convert with ``insplug.converters.solov2.official_to_detectron2``.

yacs::

    MODEL.META_ARCHITECTURE: InsplugSOLOv2
    MODEL.INSPLUG.SOLOV2.*      # AdelaiDet's MODEL.SOLOV2 keys, same defaults
"""
from typing import Dict, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.solo import (DEFAULT_LOSS, DEFAULT_TEST, SOLOV2_NUM_GRIDS, SOLOV2_SCALE_RANGES,
                               SOLOV2_STRIDES, MaskFeatBranch, SOLOInstanceBranch,
                               SOLOv2InstanceBranch, flatten_levels, point_nms,
                               solo_inference_single, solo_losses, solo_mask_probs,
                               solo_targets_single, solo_v1_targets_single,
                               solov2_inference_single, solov2_losses)
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor


@register_config_node('SOLOV2')
def _solov2_node():
    ins = signature_defaults(SOLOv2InstanceBranch)
    mask = signature_defaults(MaskFeatBranch)
    t = signature_defaults(solo_targets_single)
    node = CN()
    node.INSTANCE_IN_FEATURES = ['p2', 'p3', 'p4', 'p5', 'p6']
    node.FPN_INSTANCE_STRIDES = list(SOLOV2_STRIDES)
    node.FPN_SCALE_RANGES = [list(r) for r in SOLOV2_SCALE_RANGES]
    node.SIGMA = t['pos_scale']
    node.INSTANCE_CHANNELS = ins['feat_channels']
    node.NUM_INSTANCE_CONVS = ins['stacked_convs']
    node.NUM_GRIDS = list(SOLOV2_NUM_GRIDS)
    node.NUM_CLASSES = ins['num_classes']
    node.NUM_KERNELS = ins['kernel_channels']
    node.NORM = 'GN'
    node.PRIOR_PROB = ins['prior_prob']
    node.MASK_IN_FEATURES = ['p2', 'p3', 'p4', 'p5']
    node.MASK_CHANNELS = mask['feat_channels']
    node.NUM_MASKS = mask['out_channels']
    node.NMS_PRE = DEFAULT_TEST['nms_pre']
    node.SCORE_THR = DEFAULT_TEST['score_thr']
    node.UPDATE_THR = DEFAULT_TEST['update_thr']
    node.MASK_THR = DEFAULT_TEST['mask_thr']
    node.MAX_PER_IMG = DEFAULT_TEST['max_per_img']
    node.NMS_KERNEL = DEFAULT_TEST['nms_kernel']
    node.NMS_SIGMA = DEFAULT_TEST['nms_sigma']
    node.LOSS = CN()
    node.LOSS.FOCAL_ALPHA = DEFAULT_LOSS['focal_alpha']
    node.LOSS.FOCAL_GAMMA = DEFAULT_LOSS['focal_gamma']
    node.LOSS.FOCAL_WEIGHT = DEFAULT_LOSS['focal_weight']
    node.LOSS.DICE_WEIGHT = DEFAULT_LOSS['dice_weight']
    # 'targets': mean over the positives' mask targets (AdelaiDet, WXinlong/SOLO); 'cells':
    # their sum over the distinct positive cells (mmdet 3)
    node.LOSS.DICE_NORMALIZER = DEFAULT_LOSS['dice_normalizer']
    return node


@META_ARCH_REGISTRY.register()
class InsplugSOLOv2(NormalisedInputs, nn.Module):
    """SOLOv2 (Wang et al., NeurIPS 2020) as a detectron2 meta-architecture.

    Args:
        backbone: a detectron2 ``Backbone`` with the ``instance_in_features`` and
            ``mask_in_features`` outputs (an FPN: p2-p6).
        ins_head: :class:`SOLOv2InstanceBranch`. mask_head: :class:`MaskFeatBranch`.
        instance_in_features, mask_in_features: feature names.
        strides: per instance level (mask-area filter at test time).
        scale_ranges, sigma: target assignment. pixel_mean, pixel_std: 3 values each.
        loss: dict of :data:`insplug.core.solo.DEFAULT_LOSS` keys.
        test: dict of :data:`insplug.core.solo.DEFAULT_TEST` keys.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, ins_head: SOLOv2InstanceBranch,
                 mask_head: MaskFeatBranch, instance_in_features: Sequence[str],
                 mask_in_features: Sequence[str], strides: Sequence[int],
                 scale_ranges: Sequence[Sequence[float]], sigma: float,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 loss: Dict = None, test: Dict = None):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in list(instance_in_features) + list(mask_in_features)
                   if f not in shapes]
        if missing:
            raise ValueError(f'SOLOv2 features {missing} are not backbone outputs '
                             f'{sorted(shapes)} (use an FPN backbone: p2-p6)')
        if len(instance_in_features) != len(ins_head.num_grids) or \
                len(strides) != len(ins_head.num_grids) or \
                len(scale_ranges) != len(ins_head.num_grids):
            raise ValueError('instance features, strides, scale ranges and grids must have one '
                             'entry per level')
        if ins_head.kernel_channels != mask_head.out_channels:
            raise ValueError(f'kernel length {ins_head.kernel_channels} must equal the mask '
                             f'feature channels {mask_head.out_channels} (1x1 dynamic conv)')
        self.backbone, self.ins_head, self.mask_head = backbone, ins_head, mask_head
        self.instance_in_features = list(instance_in_features)
        self.mask_in_features = list(mask_in_features)
        self.strides = list(strides)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self.num_classes = ins_head.num_classes
        unknown = set(loss or {}) - set(DEFAULT_LOSS) | set(test or {}) - set(DEFAULT_TEST)
        if unknown:
            raise ValueError(f'unknown loss/test keys {sorted(unknown)}')
        self.loss_cfg = dict(DEFAULT_LOSS, **(loss or {}))
        self.test_cfg = dict(DEFAULT_TEST, **(test or {}))
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.INSPLUG.SOLOV2
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_channels = {shapes[f].channels for f in s.INSTANCE_IN_FEATURES if f in shapes}
        if len(in_channels) != 1:
            raise ValueError('SOLOv2 instance features must exist and have one channel count, '
                             f'got {in_channels}')
        c = in_channels.pop()
        norm = None if s.NORM in ('', 'none') else s.NORM
        ins_head = SOLOv2InstanceBranch(c, s.INSTANCE_CHANNELS, s.NUM_CLASSES, s.NUM_KERNELS,
                                        list(s.NUM_GRIDS), s.NUM_INSTANCE_CONVS, norm,
                                        s.PRIOR_PROB)
        mask_head = MaskFeatBranch(shapes[s.MASK_IN_FEATURES[0]].channels, s.MASK_CHANNELS,
                                   s.NUM_MASKS, len(s.MASK_IN_FEATURES), norm)
        return dict(
            backbone=backbone, ins_head=ins_head, mask_head=mask_head,
            instance_in_features=list(s.INSTANCE_IN_FEATURES),
            mask_in_features=list(s.MASK_IN_FEATURES), strides=list(s.FPN_INSTANCE_STRIDES),
            scale_ranges=[list(r) for r in s.FPN_SCALE_RANGES], sigma=s.SIGMA,
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
            loss=dict(dice_weight=s.LOSS.DICE_WEIGHT, focal_weight=s.LOSS.FOCAL_WEIGHT,
                      focal_alpha=s.LOSS.FOCAL_ALPHA, focal_gamma=s.LOSS.FOCAL_GAMMA,
                      dice_normalizer=s.LOSS.DICE_NORMALIZER),
            test=dict(score_thr=s.SCORE_THR, mask_thr=s.MASK_THR, nms_pre=s.NMS_PRE,
                      update_thr=s.UPDATE_THR, max_per_img=s.MAX_PER_IMG,
                      nms_kernel=s.NMS_KERNEL, nms_sigma=float(s.NMS_SIGMA)))

    def forward_heads(self, features: Dict[str, torch.Tensor]):
        """Backbone features -> (cls logits: L x (B, K, S_l, S_l), kernels: L x
        (B, E, S_l, S_l), mask features (B, E, h, w))."""
        cate, kernels = self.ins_head([features[f] for f in self.instance_in_features])
        mask_feats = self.mask_head([features[f] for f in self.mask_in_features])
        return cate, kernels, mask_feats

    def targets(self, gt_instances, mask_feat_size):
        """Per image, per level target dicts (:func:`solo_targets_single`)."""
        out = []
        for g in gt_instances:
            masks = instances_mask_tensor(g, self.device)
            out.append(solo_targets_single(
                g.gt_boxes.tensor.to(self.device), g.gt_classes.to(self.device), masks,
                mask_feat_size, self.num_classes, self.ins_head.num_grids, self.scale_ranges,
                self.sigma))
        return out

    def losses(self, cate, kernels, mask_feats, gt_instances):
        targets = self.targets(gt_instances, tuple(mask_feats.shape[-2:]))
        return solov2_losses(cate, kernels, mask_feats, targets, self.num_classes,
                             **self.loss_cfg)

    def inference(self, cate, kernels, mask_feats, batched_inputs, image_sizes):
        scores, kernel_rows, strides = flatten_levels(
            [point_nms(c.sigmoid()) for c in cate], kernels, self.strides)
        results = []
        for i, (x, size) in enumerate(zip(batched_inputs, image_sizes)):
            ori = (x.get('height', size[0]), x.get('width', size[1]))
            s, labels, masks = solov2_inference_single(
                scores[i], kernel_rows[i], strides, mask_feats[i], tuple(size), ori,
                **self.test_cfg)
            inst = Instances(ori)
            inst.pred_masks = masks
            inst.pred_boxes = Boxes(masks_to_boxes(masks))
            inst.scores = s
            inst.pred_classes = labels
            results.append({'instances': inst})
        return results

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        cate, kernels, mask_feats = self.forward_heads(features)
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('SOLOv2 training needs "instances" in every input dict')
            gt = [x['instances'].to(self.device) for x in batched_inputs]
            return self.losses(cate, kernels, mask_feats, gt)
        return self.inference(cate, kernels, mask_feats, batched_inputs, images.image_sizes)


@register_config_node('SOLO')
def _solo_node():
    ins = signature_defaults(SOLOInstanceBranch)
    t = signature_defaults(solo_v1_targets_single)
    node = CN()
    node.INSTANCE_IN_FEATURES = ['p2', 'p3', 'p4', 'p5', 'p6']
    node.FPN_INSTANCE_STRIDES = list(SOLOV2_STRIDES)
    node.FPN_SCALE_RANGES = [list(r) for r in SOLOV2_SCALE_RANGES]
    node.SIGMA = t['pos_scale']
    node.DECOUPLED = ins['decoupled']
    node.INSTANCE_CHANNELS = ins['feat_channels']
    node.NUM_INSTANCE_CONVS = ins['stacked_convs']
    node.NUM_GRIDS = list(SOLOV2_NUM_GRIDS)
    node.NUM_CLASSES = ins['num_classes']
    node.NORM = 'GN'
    node.PRIOR_PROB = ins['prior_prob']
    node.NMS_PRE = DEFAULT_TEST['nms_pre']
    node.SCORE_THR = DEFAULT_TEST['score_thr']
    node.UPDATE_THR = DEFAULT_TEST['update_thr']
    node.MASK_THR = DEFAULT_TEST['mask_thr']
    node.MAX_PER_IMG = DEFAULT_TEST['max_per_img']
    node.NMS_KERNEL = DEFAULT_TEST['nms_kernel']
    node.NMS_SIGMA = DEFAULT_TEST['nms_sigma']
    node.LOSS = CN()
    node.LOSS.FOCAL_ALPHA = DEFAULT_LOSS['focal_alpha']
    node.LOSS.FOCAL_GAMMA = DEFAULT_LOSS['focal_gamma']
    node.LOSS.FOCAL_WEIGHT = DEFAULT_LOSS['focal_weight']
    node.LOSS.DICE_WEIGHT = DEFAULT_LOSS['dice_weight']
    return node


@META_ARCH_REGISTRY.register()
class InsplugSOLO(NormalisedInputs, nn.Module):
    """SOLO (Wang et al., ECCV 2020), vanilla or decoupled head, as a detectron2
    meta-architecture.

    Args:
        backbone: an FPN ``Backbone`` (p2-p6). ins_head: :class:`SOLOInstanceBranch`.
        instance_in_features, strides, scale_ranges, sigma, pixel_mean, pixel_std: as
            :class:`InsplugSOLOv2`.
        loss: dict of ``dice_weight``, ``focal_weight``, ``focal_alpha``, ``focal_gamma``.
        test: dict of :data:`insplug.core.solo.DEFAULT_TEST` keys.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, ins_head: SOLOInstanceBranch,
                 instance_in_features: Sequence[str], strides: Sequence[int],
                 scale_ranges: Sequence[Sequence[float]], sigma: float,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 loss: Dict = None, test: Dict = None):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in instance_in_features if f not in shapes]
        if missing:
            raise ValueError(f'SOLO features {missing} are not backbone outputs '
                             f'{sorted(shapes)} (use an FPN backbone: p2-p6)')
        n = len(ins_head.num_grids)
        if not len(instance_in_features) == len(strides) == len(scale_ranges) == n:
            raise ValueError('instance features, strides, scale ranges and grids must have one '
                             'entry per level')
        loss_keys = set(DEFAULT_LOSS) - {'dice_normalizer'}
        unknown = set(loss or {}) - loss_keys | set(test or {}) - set(DEFAULT_TEST)
        if unknown:
            raise ValueError(f'unknown loss/test keys {sorted(unknown)}')
        self.backbone, self.ins_head = backbone, ins_head
        self.instance_in_features = list(instance_in_features)
        self.strides = list(strides)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self.num_classes = ins_head.num_classes
        self.loss_cfg = dict({k: DEFAULT_LOSS[k] for k in loss_keys}, **(loss or {}))
        self.test_cfg = dict(DEFAULT_TEST, **(test or {}))
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.INSPLUG.SOLO
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_channels = {shapes[f].channels for f in s.INSTANCE_IN_FEATURES if f in shapes}
        if len(in_channels) != 1:
            raise ValueError('SOLO instance features must exist and have one channel count, '
                             f'got {in_channels}')
        norm = None if s.NORM in ('', 'none') else s.NORM
        ins_head = SOLOInstanceBranch(in_channels.pop(), s.INSTANCE_CHANNELS, s.NUM_CLASSES,
                                      list(s.NUM_GRIDS), s.NUM_INSTANCE_CONVS, s.DECOUPLED, norm,
                                      0, s.PRIOR_PROB)
        return dict(
            backbone=backbone, ins_head=ins_head,
            instance_in_features=list(s.INSTANCE_IN_FEATURES),
            strides=list(s.FPN_INSTANCE_STRIDES),
            scale_ranges=[list(r) for r in s.FPN_SCALE_RANGES], sigma=s.SIGMA,
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
            loss=dict(dice_weight=s.LOSS.DICE_WEIGHT, focal_weight=s.LOSS.FOCAL_WEIGHT,
                      focal_alpha=s.LOSS.FOCAL_ALPHA, focal_gamma=s.LOSS.FOCAL_GAMMA),
            test=dict(score_thr=s.SCORE_THR, mask_thr=s.MASK_THR, nms_pre=s.NMS_PRE,
                      update_thr=s.UPDATE_THR, max_per_img=s.MAX_PER_IMG,
                      nms_kernel=s.NMS_KERNEL, nms_sigma=float(s.NMS_SIGMA)))

    def forward_head(self, features: Dict[str, torch.Tensor]):
        """Backbone features -> the head's outputs (see :class:`SOLOInstanceBranch`)."""
        return self.ins_head([features[f] for f in self.instance_in_features])

    def targets(self, gt_instances, featmap_sizes, pad_shape):
        """Per image, per level targets; gt masks zero-padded to ``pad_shape`` (the batch)."""
        out = []
        for g in gt_instances:
            masks = instances_mask_tensor(g, self.device)
            padded = masks.new_zeros((masks.shape[0],) + tuple(pad_shape))
            padded[:, :masks.shape[1], :masks.shape[2]] = masks
            out.append(solo_v1_targets_single(
                g.gt_boxes.tensor.to(self.device), g.gt_classes.to(self.device), padded,
                featmap_sizes, self.num_classes, self.ins_head.num_grids, self.scale_ranges,
                self.strides, self.sigma))
        return out

    def losses(self, outputs, gt_instances, pad_shape):
        featmap_sizes = [tuple(m.shape[-2:]) for m in outputs[0]]
        targets = self.targets(gt_instances, featmap_sizes, pad_shape)
        if self.ins_head.decoupled:
            return solo_losses(outputs[0], outputs[2], targets, self.num_classes,
                               mask_logits_y=outputs[1], **self.loss_cfg)
        return solo_losses(outputs[0], outputs[1], targets, self.num_classes, **self.loss_cfg)

    def inference(self, outputs, batched_inputs, image_sizes):
        cls_logits = outputs[-1]
        size = outputs[0][0].shape[-2:]
        cls_scores = [point_nms(c.sigmoid()) for c in cls_logits]
        scores, _, strides = flatten_levels(cls_scores, cls_scores, self.strides)
        probs = [solo_mask_probs(m, size) for m in outputs[:-1]]
        test = {k: v for k, v in self.test_cfg.items() if k != 'score_thr'}
        results = []
        for i, (x, img_size) in enumerate(zip(batched_inputs, image_sizes)):
            ori = (x.get('height', img_size[0]), x.get('width', img_size[1]))
            if self.ins_head.decoupled:
                masks_in = dict(probs_x=probs[0][i], probs_y=probs[1][i],
                                num_grids=self.ins_head.num_grids)
            else:
                masks_in = dict(mask_probs=probs[0][i])
            s, labels, masks = solo_inference_single(
                scores[i], strides, img_shape=tuple(img_size), ori_shape=ori,
                score_thr=self.test_cfg['score_thr'], **masks_in, **test)
            inst = Instances(ori)
            inst.pred_masks = masks
            inst.pred_boxes = Boxes(masks_to_boxes(masks))
            inst.scores = s
            inst.pred_classes = labels
            results.append({'instances': inst})
        return results

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_head(self.backbone(images.tensor))
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('SOLO training needs "instances" in every input dict')
            gt = [x['instances'].to(self.device) for x in batched_inputs]
            return self.losses(outputs, gt, tuple(images.tensor.shape[-2:]))
        return self.inference(outputs, batched_inputs, images.image_sizes)
