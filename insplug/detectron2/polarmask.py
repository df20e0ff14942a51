"""PolarMask for detectron2: the ``InsplugPolarMask`` meta-architecture (META_ARCH_REGISTRY).

Shapes: B images, L levels, K classes, R rays, (Hp, Wp) the padded batch input, (h_i, w_i)
image i's un-padded input size, (H_i, W_i) its output (original) size, D detections.

The official release is mmdet 1.0 only; here it is a one-stage meta-architecture on the FCOS
layout: backbone + FPN from ``build_insplug_fcos_resnet_fpn_backbone`` (P3-P7, P6/P7 from P5,
:mod:`insplug.detectron2.fcos`), the FCOS point grid (``insplug.core.fcos.fcos_locations``,
``s * i + s // 2``, as InsplugFCOS) and regress ranges from ``SIZES_OF_INTEREST``, and
:class:`insplug.core.polarmask.head.PolarMaskHeadNet` (FCOS towers without conv bias + a mask
tower predicting R ray lengths; the mmdet adapter's module names, so the mmdet layout maps by a
prefix). Training: :func:`insplug.core.polarmask.loss.polarmask_loss_inputs` and
:func:`~insplug.core.polarmask.loss.polarmask_losses` (official targets and normalisers);
inference: :func:`insplug.core.polarmask.inference.polarmask_predict_single` (per-level top
``nms_pre``, ``cls * (ctr + 0.5)``, NMS with ``+1`` areas, ray polygons filled at the output
size). Results are ``Instances`` at the output size with ``pred_masks`` (bool),
``pred_boxes``, ``scores`` and ``pred_classes``, ready for ``COCOEvaluator``.

The name carries an ``Insplug`` prefix like the other insplug meta-architectures.

yacs::

    MODEL.META_ARCHITECTURE: InsplugPolarMask
    MODEL.BACKBONE.NAME: build_insplug_fcos_resnet_fpn_backbone  (TOP_LEVELS in INSPLUG.FCOS)
    MODEL.INSPLUG.POLARMASK.*   # NUM_CLASSES, IN_FEATURES, FPN_STRIDES, SIZES_OF_INTEREST,
                                # NUM_CONVS, NORM_GROUPS, NUM_RAYS, POS_RADIUS, BOX_OFFSET, ...
"""
from typing import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from insplug.core.fcos import fcos_locations, regress_ranges_from_sizes
from insplug.core.polarmask.head import PolarMaskHeadNet
from insplug.core.polarmask.inference import polarmask_predict_single
from insplug.core.polarmask.loss import polarmask_loss_inputs, polarmask_losses
from insplug.core.polarmask.targets import polar_targets_single
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['InsplugPolarMask', 'POLARMASK_ARCH_DEFAULTS']

# the release's architecture values the core has no default argument for
# (configs/polarmask/4gpu/polar_768_1x_r50.py; FCOS strides and regress ranges)
POLARMASK_ARCH_DEFAULTS = dict(in_features=('p3', 'p4', 'p5', 'p6', 'p7'),
                               strides=(8, 16, 32, 64, 128),
                               sizes_of_interest=(64, 128, 256, 512))


@register_config_node('POLARMASK')
def _polarmask_node():
    net = signature_defaults(PolarMaskHeadNet)
    tgt = signature_defaults(polar_targets_single)
    loss = signature_defaults(polarmask_losses)
    test = signature_defaults(polarmask_predict_single)
    a = POLARMASK_ARCH_DEFAULTS
    node = CN()
    node.NUM_CLASSES = net['num_classes']
    node.IN_FEATURES = list(a['in_features'])
    node.FPN_STRIDES = list(a['strides'])
    node.SIZES_OF_INTEREST = list(a['sizes_of_interest'])
    node.NUM_CONVS = net['num_convs']
    node.NORM_GROUPS = net['norm_groups']
    node.PRIOR_PROB = net['prior_prob']
    node.NUM_RAYS = tgt['num_rays']
    node.POS_RADIUS = tgt['radius']
    node.BOX_OFFSET = tgt['box_offset']
    node.LOSS_ALPHA = loss['focal_alpha']
    node.LOSS_GAMMA = loss['focal_gamma']
    node.LOSS_WEIGHT_CLS = loss['loss_weight_cls']
    node.LOSS_WEIGHT_BBOX = loss['loss_weight_bbox']
    node.LOSS_WEIGHT_MASK = loss['loss_weight_mask']
    node.LOSS_WEIGHT_CENTERNESS = loss['loss_weight_centerness']
    node.INFERENCE_TH_TEST = test['score_thr']
    node.PRE_NMS_TOPK_TEST = test['nms_pre']
    node.NMS_TH = test['iou_thr']
    node.POST_NMS_TOPK_TEST = test['max_per_img']
    node.CENTERNESS_BIAS = test['centerness_bias']
    return node


@META_ARCH_REGISTRY.register()
class InsplugPolarMask(NormalisedInputs, nn.Module):
    """PolarMask (Xie et al., CVPR 2020) as a detectron2 meta-architecture.

    Args:
        backbone: a detectron2 ``Backbone`` with the ``in_features`` outputs (same channels).
        head: :class:`PolarMaskHeadNet`.
        in_features, strides, sizes_of_interest: the levels (P3-P7; 8 ... 128; 64 ... 512).
        pixel_mean, pixel_std: input normalisation.
        radius, box_offset: target options (1.5, 1.0). loss_opts: ``polarmask_losses`` kwargs.
        test_opts: ``nms_pre``, ``score_thr``, ``iou_thr``, ``max_per_img``,
            ``centerness_bias``.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, head: PolarMaskHeadNet,
                 in_features: Sequence[str], strides: Sequence[int],
                 sizes_of_interest: Sequence[float], pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], radius: float = 1.5, box_offset: float = 1.0,
                 loss_opts: dict = None, test_opts: dict = None):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f'PolarMask in_features {list(in_features)}: {missing} are not '
                             f'backbone outputs {sorted(shapes)}')
        self.regress_ranges = regress_ranges_from_sizes(sizes_of_interest)
        if not (len(in_features) == len(strides) == len(self.regress_ranges)
                == len(head.scales)):
            raise ValueError(f'PolarMask: {len(in_features)} in_features, {len(strides)} '
                             f'strides, {len(self.regress_ranges)} regress ranges and '
                             f'{len(head.scales)} head levels must agree')
        wrong = {f: shapes[f].stride for f, s in zip(in_features, strides)
                 if shapes[f].stride != s}
        if wrong:
            raise ValueError(f'PolarMask strides {list(strides)} differ from the backbone\'s '
                             f'{wrong}')
        self.backbone, self.head = backbone, head
        self.in_features = list(in_features)
        self.strides = [int(s) for s in strides]
        self.radius, self.box_offset = radius, box_offset
        self.loss_opts = dict(loss_opts or {})
        self.test_opts = dict(test_opts or {})
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        p = cfg.MODEL.INSPLUG.POLARMASK
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in p.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.POLARMASK.IN_FEATURES {list(p.IN_FEATURES)}: '
                             f'{missing} are not backbone outputs {sorted(shapes)}')
        channels = {shapes[f].channels for f in p.IN_FEATURES}
        if len(channels) != 1:
            raise ValueError(f'PolarMask needs the same channels on every level, got {channels}')
        c = channels.pop()
        head = PolarMaskHeadNet(c, p.NUM_CLASSES, c, p.NUM_CONVS, len(p.IN_FEATURES),
                                p.NUM_RAYS, p.NORM_GROUPS, p.PRIOR_PROB)
        return dict(
            backbone=backbone, head=head, in_features=list(p.IN_FEATURES),
            strides=list(p.FPN_STRIDES), sizes_of_interest=list(p.SIZES_OF_INTEREST),
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
            radius=p.POS_RADIUS, box_offset=p.BOX_OFFSET,
            loss_opts=dict(focal_alpha=p.LOSS_ALPHA, focal_gamma=p.LOSS_GAMMA,
                           loss_weight_cls=p.LOSS_WEIGHT_CLS,
                           loss_weight_bbox=p.LOSS_WEIGHT_BBOX,
                           loss_weight_mask=p.LOSS_WEIGHT_MASK,
                           loss_weight_centerness=p.LOSS_WEIGHT_CENTERNESS),
            test_opts=dict(nms_pre=p.PRE_NMS_TOPK_TEST, score_thr=p.INFERENCE_TH_TEST,
                           iou_thr=p.NMS_TH, max_per_img=p.POST_NMS_TOPK_TEST,
                           centerness_bias=p.CENTERNESS_BIAS))

    @property
    def num_classes(self):
        return self.head.num_classes

    def forward_head(self, images: torch.Tensor):
        """(B, 3, Hp, Wp) normalised -> per-level lists: cls logits (B, K, H_l, W_l), box
        distances (B, 4, ..), centerness logits (B, 1, ..), rays (B, R, ..); and the L point
        grids (H_l W_l, 2)."""
        features = self.backbone(images)
        outs = self.head([features[f] for f in self.in_features])
        points = fcos_locations([x.shape[-2:] for x in outs[0]], self.strides, outs[1][0].dtype,
                                outs[0][0].device)
        return outs, points

    def losses(self, outs, points, gt_instances):
        """``loss_cls``, ``loss_bbox``, ``loss_mask``, ``loss_centerness`` (official)."""
        masks = [instances_mask_tensor(g, self.device).cpu().numpy().astype(np.uint8)
                 for g in gt_instances]
        inputs = polarmask_loss_inputs(
            *outs, points, self.strides, self.regress_ranges,
            [g.gt_boxes.tensor for g in gt_instances], [g.gt_classes for g in gt_instances],
            masks, self.num_classes, self.head.num_rays, self.radius, self.box_offset)
        return polarmask_losses(inputs, **self.loss_opts)

    def inference(self, outs, points, batched_inputs, images: ImageList):
        """Per-image ``Instances`` at the requested output size (``height``/``width``)."""
        cls, box, ctr, rays = outs
        results = []
        for i, (x, (h, w)) in enumerate(zip(batched_inputs, images.image_sizes)):
            oh, ow = x.get('height', h), x.get('width', w)

            def level(maps, ch):
                return [m[i].permute(1, 2, 0).reshape(-1, ch) for m in maps]
            boxes, scores, labels, masks, _ = polarmask_predict_single(
                level(cls, self.num_classes), level(box, 4), [c[:, 0] for c in level(ctr, 1)],
                level(rays, self.head.num_rays), points, (h, w),
                scale_factor=(w / ow, h / oh), out_shape=(oh, ow), **self.test_opts)
            inst = Instances((oh, ow))
            inst.pred_boxes = Boxes(boxes)
            inst.scores = scores
            inst.pred_classes = labels
            inst.pred_masks = masks
            results.append({'instances': inst})
        return results

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images = self.preprocess_image(batched_inputs)
        outs, points = self.forward_head(images.tensor)
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('PolarMask training needs "instances" in every input dict (use '
                               'a dataset mapper with is_train=True)')
            return self.losses(outs, points,
                               [x['instances'].to(self.device) for x in batched_inputs])
        return self.inference(outs, points, batched_inputs, images)

