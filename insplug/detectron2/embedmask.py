"""EmbedMask for detectron2: the ``InsplugEmbedMask`` meta-architecture (META_ARCH_REGISTRY).

Shapes: B images, D embedding dims (16), L FPN levels, P points of one image, G objects of one
image, N detections of one image, h0 x w0 the finest level (stride 8).

The official EmbedMask (yinghdb/EmbedMask, commit e9d6142) is maskrcnn-benchmark code; here it
is placed like AdelaiDet's BlendMask: backbone (``build_insplug_fcos_resnet_fpn_backbone``,
P3-P7) -> proposal generator :class:`~insplug.detectron2.fcos.InsplugFCOS` (its box towers are
also read) -> :class:`InsplugEmbedMaskHead` (proposal embeddings and margins on every level's
box tower, pixel embeddings from a mask tower on P3; official module names). All maths is in
:mod:`insplug.core.embedmask` (``embedding`` + ``pipeline``) and :mod:`insplug.core.fcos`, shared
with the mmdet adapter :class:`insplug.mmdet.embedmask.EmbedMaskHead`:

* training: FCOS targets with the "point on the object's mask" rule, the FCOS losses
  (``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``), the official embedding sampling and
  Lovasz mask loss (``loss_mask``, weight ``LOSS_MASK_WEIGHT`` 0.5);
* inference: FCOS-official detections (score ``cls * ctr``, boxes clipped to ``W - 1``, NMS
  with +1 areas), log-probability maps inside each box, resized once to the output size and
  thresholded at ``log(0.53)``; ``Instances`` at the output size with ``pred_masks`` (bool),
  ``pred_boxes`` (scaled), ``scores``, ``pred_classes``.

yacs::

    MODEL.META_ARCHITECTURE: InsplugEmbedMask
    MODEL.PROPOSAL_GENERATOR.NAME: InsplugFCOS
    MODEL.INSPLUG.FCOS.*       (SCORE: product, as FCOS-official)
    MODEL.INSPLUG.EMBEDMASK.*
"""
from typing import List, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from insplug.core.embedmask.embedding import (coordinate_embedding, margin_bias,
                                              margins_from_logits)
from insplug.core.embedmask.pipeline import (batch_mask_loss, detection_masks,
                                             fcos_official_detect, gather_rows,
                                             points_in_masks, sample_object_points)
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .fcos import InsplugFCOS, Scale
from .masks import instances_mask_tensor

__all__ = ['InsplugEmbedMask', 'InsplugEmbedMaskHead', 'EMBEDMASK_DEFAULTS']

# EmbedMask's defaults that the core has no default argument for (official
# embed_mask_R50_1x.yaml + fcos_core/config/defaults.py; equal to the mmdet EmbedMaskHead's
# defaults, which a test checks)
EMBEDMASK_DEFAULTS = dict(embed_dim=16, per_dim_margin=True, prior_margin=2.0,
                          margin_reduce_factor=32.0, embed_reduce_factor=1.0,
                          sample_in_mask=True, loss_mask_weight=0.5)


@register_config_node('EMBEDMASK')
def _embedmask_node():
    d = EMBEDMASK_DEFAULTS
    loss = signature_defaults(batch_mask_loss)
    test = signature_defaults(detection_masks)
    node = CN()
    node.EMBED_DIM = d['embed_dim']
    # True (released): D margins per proposal + per-level margin_scales; False: one margin
    node.PER_DIM_MARGIN = d['per_dim_margin']
    node.PRIOR_MARGIN = d['prior_margin']
    node.MARGIN_REDUCE_FACTOR = d['margin_reduce_factor']
    node.EMBED_REDUCE_FACTOR = d['embed_reduce_factor']
    node.MASK_SCALE_FACTOR = loss['mask_scale_factor']
    node.BOX_PADDING = loss['box_padding']  # < 0 (released): loss over the whole grid
    node.SAMPLE_IN_MASK = d['sample_in_mask']
    node.LOSS_MASK_WEIGHT = d['loss_mask_weight']
    node.MASK_THRESHOLD = test['mask_thr']
    node.TEST_BOX_PAD = test['box_pad']
    return node


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, 0.0)
    return conv


class InsplugEmbedMaskHead(nn.Module):
    """EmbedMask's embedding branches (official ``EmbedMaskHead`` names).

    Args:
        in_channels: FPN / tower channels C. embed_dim: D (>= 3). num_levels: L.
        num_mask_convs: convs of the pixel (mask) tower. norm_groups: GroupNorm groups.
        per_dim_margin, prior_margin, margin_reduce_factor, embed_reduce_factor: see
            :mod:`insplug.core.embedmask.embedding`.

    Forward: P3 features (B, C, h0, w0), L box towers (B, C, H_l, W_l), L strides ->
    proposal embeddings L x (B, D, H_l, W_l), margins L x (B, D or 1, H_l, W_l), pixel
    embeddings (B, D, h0, w0).
    """

    def __init__(self, in_channels: int, embed_dim: int = 16, num_levels: int = 5,
                 num_mask_convs: int = 4, norm_groups: int = 32, per_dim_margin: bool = True,
                 prior_margin: float = 2.0, margin_reduce_factor: float = 32.0,
                 embed_reduce_factor: float = 1.0):
        super().__init__()
        if embed_dim < 3:
            raise ValueError(f'EmbedMask EMBED_DIM must be >= 3, got {embed_dim}')
        c, d = in_channels, embed_dim
        self.embed_dim, self.per_dim_margin = d, per_dim_margin
        self.margin_reduce_factor = margin_reduce_factor
        self.embed_reduce_factor = embed_reduce_factor
        self.proposal_spatial_embed_pred = _conv(c, 2)
        self.proposal_other_embed_pred = _conv(c, d - 2)
        self.proposal_margin_pred = _conv(c, d if per_dim_margin else 1)
        nn.init.constant_(self.proposal_margin_pred.bias, margin_bias(prior_margin))
        self.margin_scales = nn.ModuleList(Scale() for _ in range(num_levels)) \
            if per_dim_margin else None
        tower = []
        for _ in range(num_mask_convs):
            tower += [_conv(c, c), nn.GroupNorm(norm_groups, c), nn.ReLU()]
        self.mask_tower = nn.Sequential(*tower)
        self.pixel_spatial_embed_pred = _conv(c, 2)
        self.pixel_other_embed_pred = _conv(c, d - 2)
        self.position_scale = Scale()

    def forward(self, p3: Tensor, box_towers: Sequence[Tensor], strides: Sequence[int]):
        embeds, margins = [], []
        scale = self.position_scale.scale
        for lvl, (tower, s) in enumerate(zip(box_towers, strides)):
            e = tower / self.embed_reduce_factor
            coords = coordinate_embedding(e.shape[-2], e.shape[-1], s, scale, e)
            embeds.append(torch.cat([self.proposal_spatial_embed_pred(e) + coords,
                                     self.proposal_other_embed_pred(e)], 1))
            raw = self.proposal_margin_pred(tower / self.margin_reduce_factor)
            margins.append(margins_from_logits(
                raw, self.margin_scales[lvl].scale if self.per_dim_margin else None))
        m = self.mask_tower(p3) / self.embed_reduce_factor
        coords = coordinate_embedding(m.shape[-2], m.shape[-1], strides[0], scale, m)
        pixel = torch.cat([self.pixel_spatial_embed_pred(m) + coords,
                           self.pixel_other_embed_pred(m)], 1)
        return embeds, margins, pixel


@META_ARCH_REGISTRY.register()
class InsplugEmbedMask(NormalisedInputs, nn.Module):
    """EmbedMask (Ying et al., 2019) as a detectron2 meta-architecture (module docstring).

    Args:
        backbone, proposal_generator (:class:`InsplugFCOS`), embed_head
        (:class:`InsplugEmbedMaskHead`); mask_scale_factor (2), box_padding (-1),
        sample_in_mask (True), loss_mask_weight (0.5), mask_threshold (0.53), test_box_pad (2);
        pixel_mean, pixel_std.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, proposal_generator: InsplugFCOS,
                 embed_head: InsplugEmbedMaskHead, mask_scale_factor: int = 2,
                 box_padding: float = -1.0, sample_in_mask: bool = True,
                 loss_mask_weight: float = 0.5, mask_threshold: float = 0.53,
                 test_box_pad: int = 2, pixel_mean: Sequence[float] = (102.9801, 115.9465,
                                                                       122.7717),
                 pixel_std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__()
        if not isinstance(proposal_generator, InsplugFCOS):
            raise TypeError('InsplugEmbedMask needs MODEL.PROPOSAL_GENERATOR.NAME: InsplugFCOS, '
                            f'got {type(proposal_generator).__name__}')
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.embed_head = embed_head
        self.mask_scale_factor, self.box_padding = mask_scale_factor, box_padding
        self.sample_in_mask, self.loss_mask_weight = sample_in_mask, loss_mask_weight
        self.mask_threshold, self.test_box_pad = mask_threshold, test_box_pad
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        e, f = cfg.MODEL.INSPLUG.EMBEDMASK, cfg.MODEL.INSPLUG.FCOS
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        fcos = build_proposal_generator(cfg, shapes)
        head = InsplugEmbedMaskHead(
            shapes[f.IN_FEATURES[0]].channels, e.EMBED_DIM, len(f.IN_FEATURES), f.NUM_BOX_CONVS,
            f.NORM_GROUPS, e.PER_DIM_MARGIN, e.PRIOR_MARGIN, e.MARGIN_REDUCE_FACTOR,
            e.EMBED_REDUCE_FACTOR)
        return dict(backbone=backbone, proposal_generator=fcos, embed_head=head,
                    mask_scale_factor=e.MASK_SCALE_FACTOR, box_padding=e.BOX_PADDING,
                    sample_in_mask=e.SAMPLE_IN_MASK, loss_mask_weight=e.LOSS_MASK_WEIGHT,
                    mask_threshold=e.MASK_THRESHOLD, test_box_pad=e.TEST_BOX_PAD,
                    pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD))

    def forward_outputs(self, features):
        """Raw outputs: FCOS (logits, regs (stride units with ``NORM_REG_TARGETS``), ctrs),
        embeddings, margins, pixel embeddings, point locations."""
        fcos = self.proposal_generator
        logits, regs, ctrs, _, towers = fcos.forward_head(features, box_towers=True)
        embeds, margins, pixel = self.embed_head(features[fcos.in_features[0]], towers,
                                                 fcos.strides)
        return logits, regs, ctrs, embeds, margins, pixel, fcos.locations(logits)

    def _reg_pixels(self, regs: List[Tensor], image: int) -> Tensor:
        """(P, 4) box regression of one image in pixels."""
        fcos = self.proposal_generator
        scale = fcos.strides if fcos.fcos_head.norm_reg_targets else [1] * len(regs)
        return torch.cat([r[image].permute(1, 2, 0).reshape(-1, 4) * s
                          for r, s in zip(regs, scale)])

    def losses(self, outputs, gt_instances: List[Instances]):
        logits, regs, ctrs, embeds, margins, pixel, locations = outputs
        fcos = self.proposal_generator
        masks = [instances_mask_tensor(g, self.device) for g in gt_instances]
        points = torch.cat(locations)
        extra = [points_in_masks(m, points) if self.sample_in_mask and len(g) else None
                 for m, g in zip(masks, gt_instances)]
        targets = fcos.targets(locations, gt_instances, extra)
        _, losses = fcos.losses(logits, regs, ctrs, [], locations, gt_instances, targets)
        embs, mars, obj_masks, boxes = [], [], [], []
        for i, (gt, (_, _, inds)) in enumerate(zip(gt_instances, targets)):
            gt_boxes = gt.gt_boxes.tensor
            point = sample_object_points(points, self._reg_pixels(regs, i).detach(), inds,
                                         gt_boxes)
            valid = point >= 0
            mar = gather_rows(margins, point[valid], i)
            embs.append(gather_rows(embeds, point[valid], i))
            mars.append(mar if self.embed_head.per_dim_margin else mar[:, 0])
            obj_masks.append(masks[i][valid])
            boxes.append(gt_boxes[valid])
        loss = batch_mask_loss(pixel, embs, mars, obj_masks, boxes, fcos.strides[0],
                               self.mask_scale_factor, self.box_padding)
        # every embedding output takes part in the graph (DDP), as in the official code
        zero = pixel.sum() * 0 + sum(e.sum() * 0 + m.sum() * 0 for e, m in zip(embeds, margins))
        losses['loss_mask'] = self.loss_mask_weight * (zero if loss is None else zero + loss)
        return losses

    def inference(self, outputs, batched_inputs, image_sizes):
        logits, regs, ctrs, embeds, margins, pixel, locations = outputs
        fcos = self.proposal_generator
        o = fcos.test_opts
        k = logits[0].shape[1]
        results = []
        for i, (x, size) in enumerate(zip(batched_inputs, image_sizes)):
            in_hw = tuple(size)
            out_hw = (x.get('height', size[0]), x.get('width', size[1]))
            reg = self._reg_pixels(regs, i)
            splits = [p.shape[0] for p in locations]
            det = fcos_official_detect(
                [c[i].permute(1, 2, 0).reshape(-1, k) for c in logits], reg.split(splits),
                [t[i].reshape(-1) for t in ctrs], locations, in_hw, o['score_thr'],
                o['nms_pre'], o['score'], o['nms_thr'], o['max_per_img'])
            mar = gather_rows(margins, det['point_inds'], i)
            masks = detection_masks(
                pixel[i], gather_rows(embeds, det['point_inds'], i),
                mar if self.embed_head.per_dim_margin else mar[:, 0], det['bboxes'], in_hw,
                out_hw, fcos.strides[0], self.mask_scale_factor, self.test_box_pad,
                self.mask_threshold)
            boxes = det['bboxes'] * det['bboxes'].new_tensor(
                [out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]] * 2)
            inst = Instances(out_hw)
            inst.pred_boxes = Boxes(boxes)
            inst.scores = det['scores']
            inst.pred_classes = det['labels']
            inst.pred_masks = masks
            results.append({'instances': inst})
        return results

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_outputs(self.backbone(images.tensor))
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('EmbedMask training needs "instances" in every input dict')
            return self.losses(outputs, [x['instances'].to(self.device)
                                         for x in batched_inputs])
        return self.inference(outputs, batched_inputs, images.image_sizes)

