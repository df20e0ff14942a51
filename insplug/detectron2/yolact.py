"""YOLACT / YOLACT++ for detectron2: the ``InsplugYOLACT`` meta-architecture (META_ARCH_REGISTRY).

Shapes: B images; (Hp, Wp) the padded batch input; (h_i, w_i) the resized image i inside it;
(H_i, W_i) its output (original) size; P priors; K classes; k prototypes.

backbone (C3-C5, e.g. detectron2's ResNet res3-res5) -> :class:`YolactFPNModule` (P3-P7, ReLU
after the 3x3 convs) -> :class:`YolactPredictionHead` (class / box / coefficient per prior) and
:class:`ProtoNetEncoder` (prototypes from P3), the semantic 1x1 conv on P3 (training) and, for
YOLACT++, :class:`FastMaskIoUNet`. Training calls the core's
:func:`~insplug.core.prototypes.yolact.match_batch`,
:func:`~insplug.core.prototypes.yolact.box_branch_losses` and
:func:`~insplug.core.prototypes.yolact.mask_branch_losses` (the release's matching, OHEM,
normalisers, subsampled mask loss, semantic and mask-IoU losses); inference
:func:`~insplug.core.prototypes.yolact.detect` (Fast NMS) and
:func:`~insplug.core.prototypes.yolact.postprocess` (assembly, crop, YOLACT++ rescoring,
one-step upsampling, the release's integer boxes). The mmdet adapter (``YOLACTBoxHead``,
``ProtoMaskHead``) calls the same functions.

Results are ``Instances`` at the original size with ``pred_masks`` (bool), ``pred_boxes``,
``scores`` and ``pred_classes`` for ``COCOEvaluator``. With the mask-IoU net (YOLACT++) the
release scores boxes and masks differently (box: class score; mask: class score x predicted
IoU); detectron2's evaluator reads one ``scores`` for both, so ``scores`` is the *mask* score
(the published YOLACT++ figure is mask AP) and ``box_scores`` keeps the box score
(``MODEL.INSPLUG.YOLACT.TEST.RESCORE_BBOX`` as in the release otherwise).

dbolya/yolact is plain PyTorch (no detectron2 names); ``Insplug`` keeps the name clear of any
project's ``YOLACT``.

yacs::

    MODEL.META_ARCHITECTURE: InsplugYOLACT
    MODEL.INSPLUG.YOLACT.*
"""
from typing import Optional, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from insplug.core.layers.protonet import ProtoNetEncoder
from insplug.core.prototypes import yolact as Y
from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet
from insplug.core.prototypes.yolact_fpn import YolactFPNModule
from insplug.core.prototypes.yolact_head import YolactPredictionHead
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .deform_conv import enable_cpu_deform_convs
from .masks import instances_mask_tensor

__all__ = ['InsplugYOLACT', 'YOLACT_MODEL_DEFAULTS', 'make_resnet_stages']

#: model switches of the release's YOLACT that the core has no default argument for (the mmdet
#: ``ProtoMaskHead``'s defaults; a test compares them)
YOLACT_MODEL_DEFAULTS = dict(with_seg_branch=True, with_mask_iou=False)


def make_resnet_stages(depth: int = 50, stride_in_1x1: bool = False, norm: str = 'BN',
                       deform_on_per_stage: Sequence[bool] = (False, False, False, False),
                       deform_modulated: bool = False, deform_num_groups: int = 1):
    """detectron2 ResNet stages (res2-res5) with deformable 3x3 convs in the chosen stages, as
    ``build_resnet_backbone`` builds them from ``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` (for
    LazyConfigs: ``ResNet.make_default_stages`` puts one block type in every stage)."""
    from detectron2.modeling.backbone.resnet import (BottleneckBlock, DeformBottleneckBlock,
                                                     ResNet)
    blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    stages, in_ch, out_ch, bottleneck = [], 64, 256, 64
    for i, n in enumerate(blocks):
        kwargs = dict(stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1), in_channels=in_ch,
                      out_channels=out_ch, bottleneck_channels=bottleneck, norm=norm,
                      stride_in_1x1=stride_in_1x1, num_groups=1, dilation=1)
        if deform_on_per_stage[i]:
            kwargs.update(block_class=DeformBottleneckBlock, deform_modulated=deform_modulated,
                          deform_num_groups=deform_num_groups)
        else:
            kwargs['block_class'] = BottleneckBlock
        stages.append(ResNet.make_stage(num_blocks=n, **kwargs))
        in_ch, out_ch, bottleneck = out_ch, out_ch * 2, bottleneck * 2
    return stages


def _node(defaults: dict, keys=None) -> CN:
    node = CN()
    for key, value in defaults.items():
        if keys is None or key in keys:
            node[key.upper()] = ([list(v) if isinstance(v, tuple) else v for v in value]
                                 if isinstance(value, (list, tuple)) else value)
    return node


@register_config_node('YOLACT')
def _yolact_node():
    head = signature_defaults(YolactPredictionHead)
    proto = signature_defaults(ProtoNetEncoder)
    match = signature_defaults(Y.match_batch)
    box = signature_defaults(Y.box_branch_losses)
    mask = signature_defaults(Y.mask_branch_losses)
    node = CN()
    node.IN_FEATURES = ['res3', 'res4', 'res5']
    node.NUM_CLASSES = 80  # COCO (no core default)
    node.FPN = _node(signature_defaults(YolactFPNModule))
    node.HEAD = _node(head, ('feat_channels', 'num_head_convs', 'num_protos', 'prior_scales',
                             'prior_ratios', 'prior_max_size', 'square_anchors'))
    node.PROTONET = _node(proto, ('feat_channels', 'num_convs', 'in_levels', 'norm',
                                  'upsample_factor', 'proto_activation', 'init'))
    node.WITH_SEG_BRANCH = YOLACT_MODEL_DEFAULTS['with_seg_branch']
    node.WITH_MASK_IOU = YOLACT_MODEL_DEFAULTS['with_mask_iou']
    node.LOSS = _node(dict(match, **box, **mask),
                      ('pos_iou_thr', 'neg_iou_thr', 'crowd_iou_thr', 'neg_pos_ratio',
                       'cls_weight', 'bbox_weight', 'mask_weight', 'masks_to_train',
                       'crop_padding', 'segm_weight', 'mask_iou_weight', 'discard_mask_area',
                       'detach_mask_iou_input'))
    node.TEST = _node(dict(signature_defaults(Y.detect), **signature_defaults(Y.postprocess)),
                      ('score_thr', 'iou_thr', 'top_k', 'max_num', 'second_threshold',
                       'mask_thr', 'rescore_bbox', 'integer_boxes', 'drop_empty'))
    return node


@META_ARCH_REGISTRY.register()
class InsplugYOLACT(NormalisedInputs, nn.Module):
    """YOLACT (Bolya et al., ICCV 2019) / YOLACT++ (TPAMI 2020) as a detectron2
    meta-architecture.

    Args:
        backbone: a detectron2 ``Backbone`` with the ``in_features`` outputs.
        fpn: :class:`YolactFPNModule` (its inputs the ``in_features``).
        head: :class:`YolactPredictionHead`.
        protonet: :class:`ProtoNetEncoder` (``num_protos`` = the head's).
        in_features: names of C3, C4, C5.
        pixel_mean, pixel_std: input normalisation.
        with_seg_branch: the semantic 1x1 conv on P3 (training only).
        mask_iou_net: YOLACT++'s :class:`FastMaskIoUNet` or None.
        loss_cfg: keyword arguments of the core losses (``pos_iou_thr``, ``neg_iou_thr``,
            ``crowd_iou_thr``, ``neg_pos_ratio``, ``cls_weight``, ``bbox_weight``,
            ``mask_weight``, ``masks_to_train``, ``crop_padding``, ``segm_weight``,
            ``mask_iou_weight``, ``discard_mask_area``, ``detach_mask_iou_input``).
        test_cfg: ``score_thr``, ``iou_thr``, ``top_k``, ``max_num``, ``second_threshold``,
            ``mask_thr``, ``rescore_bbox``, ``integer_boxes``, ``drop_empty``.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, fpn: YolactFPNModule,
                 head: YolactPredictionHead, protonet: ProtoNetEncoder,
                 in_features: Sequence[str], pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], with_seg_branch: bool = True,
                 mask_iou_net: Optional[FastMaskIoUNet] = None,
                 loss_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None):
        super().__init__()
        # YOLACT++'s DCNv2 stages: detectron2's deformable convs get a CPU path (torchvision)
        enable_cpu_deform_convs(backbone)
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f'YOLACT in_features {list(in_features)}: {missing} are not '
                             f'backbone outputs {sorted(shapes)}; set e.g. '
                             'MODEL.RESNETS.OUT_FEATURES: [res3, res4, res5]')
        if protonet.num_protos != head.num_protos:
            raise ValueError(f'the head predicts {head.num_protos} coefficients but the protonet '
                             f'has {protonet.num_protos} prototypes')
        levels = len(fpn.lateral_convs) + len(fpn.downsample_convs)
        if levels != len(head.prior_scales):
            raise ValueError(f'the FPN gives {levels} levels but the head has prior scales for '
                             f'{len(head.prior_scales)}')
        self.backbone, self.fpn, self.head, self.protonet = backbone, fpn, head, protonet
        self.in_features = list(in_features)
        self.num_classes = head.num_classes
        fpn_channels = fpn.fpn_convs[0].out_channels
        self.segm_conv = nn.Conv2d(fpn_channels, head.num_classes, 1) if with_seg_branch \
            else None
        if self.segm_conv is not None:
            nn.init.xavier_uniform_(self.segm_conv.weight)
            nn.init.zeros_(self.segm_conv.bias)
        self.mask_iou_net = mask_iou_net
        self.loss_cfg = dict(loss_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        y = cfg.MODEL.INSPLUG.YOLACT
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in y.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.YOLACT.IN_FEATURES {list(y.IN_FEATURES)}: '
                             f'{missing} are not backbone outputs {sorted(shapes)}')
        low = {k.lower(): v for k, v in y.FPN.items()}
        fpn = YolactFPNModule([shapes[f].channels for f in y.IN_FEATURES], **low)
        h = {k.lower(): v for k, v in y.HEAD.items()}
        head = YolactPredictionHead(num_classes=y.NUM_CLASSES, in_channels=low['out_channels'],
                                    **h)
        p = {k.lower(): (tuple(v) if isinstance(v, list) else v)
             for k, v in y.PROTONET.items()}
        protonet = ProtoNetEncoder(in_channels=low['out_channels'],
                                   num_protos=head.num_protos, **p)
        return dict(
            backbone=backbone, fpn=fpn, head=head, protonet=protonet,
            in_features=list(y.IN_FEATURES), pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD), with_seg_branch=y.WITH_SEG_BRANCH,
            mask_iou_net=FastMaskIoUNet(y.NUM_CLASSES) if y.WITH_MASK_IOU else None,
            loss_cfg={k.lower(): v for k, v in y.LOSS.items()},
            test_cfg={k.lower(): v for k, v in y.TEST.items()})

    def forward_outputs(self, images: torch.Tensor) -> dict:
        """(B, 3, Hp, Wp) normalised -> ``cls`` (B, P, K + 1), ``loc`` (B, P, 4), ``coeff``
        (B, P, k), ``priors`` (P, 4), ``protos`` (B, k, H, W), ``segm`` (B, K, h, w) or None
        (training only)."""
        feats = self.backbone(images)
        pyramid = self.fpn([feats[f] for f in self.in_features])
        out = self.head(pyramid)
        out['priors'] = self.head.priors([tuple(p.shape[-2:]) for p in pyramid],
                                         images.device, out['loc'].dtype)
        out['protos'] = self.protonet(pyramid)
        out['segm'] = self.segm_conv(pyramid[0]) \
            if self.segm_conv is not None and self.training else None
        return out

    def losses(self, outputs: dict, gt_instances, pad_shape, crowd_boxes=None):
        """The release's YOLACT losses.

        Args:
            outputs: :meth:`forward_outputs`.
            gt_instances: B ground-truth ``Instances`` (``gt_boxes``, ``gt_classes``,
                ``gt_masks``) on the un-padded inputs.
            pad_shape: (Hp, Wp).
            crowd_boxes: optional per image (C_b, 4) crowd boxes in input pixels (their priors
                become neutral, as in the release). detectron2's stock mapper drops crowd
                annotations, so ``forward`` passes none.
        """
        h, w = pad_shape
        c = self.loss_cfg
        scale = outputs['loc'].new_tensor([w, h, w, h])
        rel = [g.gt_boxes.tensor.to(self.device, outputs['loc'].dtype) / scale
               for g in gt_instances]
        labels = [g.gt_classes.to(self.device).long() for g in gt_instances]
        match = {k: c[k] for k in ('pos_iou_thr', 'neg_iou_thr', 'crowd_iou_thr') if k in c}
        crowds = [None if c is None or len(c) == 0 else
                  torch.as_tensor(c, device=self.device, dtype=scale.dtype) / scale
                  for c in (crowd_boxes or [None] * len(rel))]
        tl, gt_inds, loc_t = Y.match_batch(rel, labels, crowds, outputs['priors'],
                                           self.num_classes, **match)
        box = {k: c[k] for k in ('neg_pos_ratio', 'cls_weight', 'bbox_weight') if k in c}
        losses, pos, num_pos = Y.box_branch_losses(outputs['cls'], outputs['loc'], tl, loc_t,
                                                   **box)
        coeffs = [outputs['coeff'][i][pos[i]] for i in range(len(rel))]
        inds = [gt_inds[i][pos[i]] for i in range(len(rel))]
        masks = [instances_mask_tensor(g, self.device) for g in gt_instances]
        masks = [nn.functional.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2])) for m in masks]
        mask_keys = ('mask_weight', 'masks_to_train', 'crop_padding', 'segm_weight',
                     'mask_iou_weight', 'discard_mask_area', 'detach_mask_iou_input')
        losses.update(Y.mask_branch_losses(
            outputs['protos'], outputs['segm'], coeffs, inds, rel, masks, labels,
            int(num_pos), self.num_classes, mask_iou_net=self.mask_iou_net,
            **{k: c[k] for k in mask_keys if k in c}))
        return losses

    def inference(self, outputs: dict, batched_inputs, images: ImageList):
        t = self.test_cfg
        det_keys = ('score_thr', 'iou_thr', 'top_k', 'max_num', 'second_threshold')
        post_keys = ('mask_thr', 'rescore_bbox', 'integer_boxes', 'drop_empty')
        pad = tuple(images.tensor.shape[-2:])
        processed = []
        for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            out_hw = (x.get('height', size[0]), x.get('width', size[1]))
            dets = Y.detect(outputs['cls'][i], outputs['loc'][i], outputs['coeff'][i],
                            outputs['priors'], **{k: t[k] for k in det_keys if k in t})
            res = Y.postprocess(outputs['protos'][i], dets, pad, tuple(size), out_hw,
                                (size[1] / out_hw[1], size[0] / out_hw[0]), self.mask_iou_net,
                                **{k: t[k] for k in post_keys if k in t},
                                **({'crop_padding': self.loss_cfg['crop_padding']}
                                   if 'crop_padding' in self.loss_cfg else {}))
            inst = Instances(tuple(out_hw))
            inst.pred_masks = res['masks']
            inst.pred_boxes = Boxes(res['bboxes'])
            if 'mask_scores' in res:  # YOLACT++: COCOEvaluator scores masks with `scores`
                inst.scores = res['mask_scores']
                inst.box_scores = res['scores']
            else:
                inst.scores = res['scores']
            inst.pred_classes = res['labels']
            processed.append({'instances': inst})
        return processed

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_outputs(images.tensor)
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('YOLACT training needs "instances" in every input dict (use a '
                               'dataset mapper with is_train=True)')
            gt = [x['instances'].to(self.device) for x in batched_inputs]
            return self.losses(outputs, gt, tuple(images.tensor.shape[-2:]))
        return self.inference(outputs, batched_inputs, images)
