"""The faithful FCOS for detectron2: proposal generator ``InsplugFCOS`` and backbone builder
``build_insplug_fcos_resnet_fpn_backbone``.

Shapes: B images, L pyramid levels, K classes, P points of one image (levels concatenated,
finest first), D detections of one image, T top-feature channels (BlendMask: bases x M x M).

The maths (points, centre-sampling targets, +1 IoU / focal / centerness losses, candidate
selection, sqrt score, NMS) is :mod:`insplug.core.fcos`, shared with the mmdet adapter
:class:`insplug.mmdet.fcos.FaithfulFCOSHead`. The head's module names are AdelaiDet's
(``proposal_generator.fcos_head.{cls,bbox,share}_tower``, ``cls_logits``, ``bbox_pred``,
``ctrness``, ``scales.{l}.scale`` of shape (1,)), so AdelaiDet / centermask2 FCOS weights load
as they are. Both names carry an insplug prefix: AdelaiDet and centermask2 register ``FCOS``
and ``build_fcos_resnet_fpn_backbone``.

API (small on purpose; BlendMask, EmbedMask, CenterMask build on it)::

    fcos = InsplugFCOS(cfg, backbone.output_shape())     # or build_proposal_generator(cfg, ...)
    results, losses = fcos(images, features, gt_instances=None, top_module=None)

* ``top_module``: an optional module applied to every level's box-tower features
  (B, C, H, W) -> (B, T, H, W) (BlendMask's ``top_layer``); its outputs travel with the
  locations as ``top_feats``.
* inference (``not self.training``): ``results`` is a list of B ``Instances`` (input image
  size) with ``pred_boxes`` / ``proposal_boxes`` (``Boxes``, input pixels, NOT clipped, as in
  AdelaiDet), ``scores`` (sqrt(cls * ctr) by default), ``pred_classes``, ``locations`` (D, 2),
  ``fpn_levels`` (D,), ``point_inds`` (D,) (index into the image's concatenated points) and,
  with a ``top_module``, ``top_feats`` (D, T); ``losses`` is ``{}``.
* training: ``losses`` has ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr`` (AdelaiDet's
  names; ``loss_fcos_iou`` instead of ``loss_fcos_ctr`` with ``BOX_QUALITY: iou``);
  ``results`` is a dict: ``instances`` = one flat ``Instances`` of the positive locations of the
  whole batch, image-major (fields ``im_inds``, ``gt_inds`` (index into that image's
  ``gt_instances``), ``point_inds`` (into the image's points), ``labels``, ``locations``, ``fpn_levels``, ``reg_targets`` (pixels), ``gt_ctrs`` (centerness
  targets), ``top_feats``), ``loss_denorm`` (the GPU-averaged centerness-target sum, BlendMask's
  mask-loss normaliser), ``num_pos_avg``; with ``YIELD_PROPOSAL: True`` also ``proposals``
  (the detections above, made with the ``*_TRAIN`` thresholds, without gradient).

Also public: :meth:`InsplugFCOS.forward_head` (raw per-level outputs) and
:meth:`InsplugFCOS.predict` (detections from raw outputs).

yacs: ``MODEL.PROPOSAL_GENERATOR.NAME: InsplugFCOS``, ``MODEL.INSPLUG.FCOS.*`` (AdelaiDet's
``MODEL.FCOS.*`` names, plus insplug's options of the other releases: ``NORM_GROUPS``,
``IOU_SMOOTH``, ``NORM_REG_TARGETS``, ``CENTERNESS_ON_REG``, ``CANDIDATE_MODE``, ``SCORE``,
``CLIP_BEFORE_NMS``), ``MODEL.BACKBONE.NAME: build_insplug_fcos_resnet_fpn_backbone``.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2 import modeling as d2_modeling
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from torch import Tensor, nn

from insplug.core.fcos import (fcos_locations, fcos_losses, fcos_predict_single, fcos_targets,
                               level_point_info, regress_ranges_from_sizes)

from .config import register_config_node, signature_defaults

__all__ = ['InsplugFCOS', 'InsplugFCOSHead', 'build_insplug_fcos_resnet_fpn_backbone',
           'FCOS_ARCH_DEFAULTS', 'LastLevelP6']

# FCOS's architecture defaults that the core has no default argument for (AdelaiDet
# adet/config/defaults.py; the same values are FaithfulFCOSHead's defaults, which a test checks)
FCOS_ARCH_DEFAULTS = dict(
    in_features=('p3', 'p4', 'p5', 'p6', 'p7'), strides=(8, 16, 32, 64, 128),
    sizes_of_interest=(64, 128, 256, 512), num_convs=4, norm='GN', norm_groups=32,
    prior_prob=0.01, use_scale=True, norm_reg_targets=True, centerness_on_reg=True,
    top_levels=2)

# AdelaiDet's loss names for the core's
LOSS_NAMES = {'loss_cls': 'loss_fcos_cls', 'loss_bbox': 'loss_fcos_loc',
              'loss_centerness': 'loss_fcos_ctr', 'loss_iou': 'loss_fcos_iou'}


@register_config_node('FCOS')
def _fcos_node():
    a = FCOS_ARCH_DEFAULTS
    loss = signature_defaults(fcos_losses)
    test = signature_defaults(fcos_predict_single)
    tgt = signature_defaults(fcos_targets)
    node = CN()
    node.NUM_CLASSES = 80
    node.IN_FEATURES = list(a['in_features'])
    node.FPN_STRIDES = list(a['strides'])
    node.SIZES_OF_INTEREST = list(a['sizes_of_interest'])
    node.PRIOR_PROB = a['prior_prob']
    node.NUM_CLS_CONVS = a['num_convs']
    node.NUM_BOX_CONVS = a['num_convs']
    node.NUM_SHARE_CONVS = 0
    node.NORM = a['norm']  # 'GN' or 'none'
    node.NORM_GROUPS = a['norm_groups']  # AdelaiDet: GroupNorm(32, C)
    node.USE_SCALE = a['use_scale']
    node.NORM_REG_TARGETS = a['norm_reg_targets']  # False: exp() in pixels (original FCOS)
    node.CENTERNESS_ON_REG = a['centerness_on_reg']
    node.TOP_LEVELS = a['top_levels']  # P6/P7 of build_insplug_fcos_resnet_fpn_backbone
    node.CENTER_SAMPLE = True
    node.POS_RADIUS = tgt['center_sample_radius']
    node.LOC_LOSS_TYPE = loss['loss_type']
    node.IOU_SMOOTH = loss['iou_smooth']
    node.BOX_QUALITY = loss['box_quality']
    node.LOSS_ALPHA = loss['focal_alpha']
    node.LOSS_GAMMA = loss['focal_gamma']
    node.LOSS_NORMALIZER_CLS = loss['cls_normalizer']
    node.LOSS_WEIGHT_CLS = loss['loss_weight_cls']
    node.INFERENCE_TH_TRAIN = test['score_thr']
    node.INFERENCE_TH_TEST = test['score_thr']
    node.PRE_NMS_TOPK_TRAIN = test['nms_pre']
    node.PRE_NMS_TOPK_TEST = test['nms_pre']
    node.POST_NMS_TOPK_TRAIN = test['max_per_img']
    node.POST_NMS_TOPK_TEST = test['max_per_img']
    node.NMS_TH = test['nms_thr']
    node.THRESH_WITH_CTR = test['thresh_with_ctr']
    node.CANDIDATE_MODE = test['candidate_mode']  # 'threshold_topk' | 'point_topk'
    node.SCORE = test['score']  # 'sqrt' | 'product' | 'cls'
    node.CLIP_BEFORE_NMS = False
    node.YIELD_PROPOSAL = False
    return node


class Scale(nn.Module):
    """Learnable scalar (AdelaiDet's ``Scale``: parameter of shape (1,))."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class InsplugFCOSHead(nn.Module):
    """FCOS towers and predictors with AdelaiDet's module names.

    Args:
        in_channels: C (every level). num_classes: K.
        num_cls_convs, num_box_convs, num_share_convs: tower depths (4, 4, 0).
        norm: 'GN' (GroupNorm(norm_groups, C)) or None. norm_groups: 32.
        use_scale: per-level learnable scale on the box regression.
        num_levels: L. prior_prob: class-bias prior (0.01).
        centerness_on_reg: centerness predicted from the box tower (else the class tower).
        norm_reg_targets: ``relu`` output in stride units (else ``exp``, pixels).

    Forward: L maps (B, C, H_l, W_l) -> per-level lists of cls logits (B, K, H, W), box
    (l, t, r, b) (B, 4, H, W) (stride units with ``norm_reg_targets``, else pixels),
    centerness logits (B, 1, H, W), top feats (B, T, H, W) (empty without ``top_module``)
    and, with ``box_towers=True``, the box-tower features (B, C, H, W) (AdelaiDet
    ``YIELD_BOX_FEATURES``; EmbedMask's embeddings read them).
    """

    def __init__(self, in_channels: int, num_classes: int, num_cls_convs: int = 4,
                 num_box_convs: int = 4, num_share_convs: int = 0, norm: Optional[str] = 'GN',
                 norm_groups: int = 32, use_scale: bool = True, num_levels: int = 5,
                 prior_prob: float = 0.01, centerness_on_reg: bool = True,
                 norm_reg_targets: bool = True):
        super().__init__()
        if norm not in ('GN', None):
            raise ValueError(f"InsplugFCOSHead norm must be 'GN' or None, got {norm!r}")
        self.num_classes = num_classes
        self.centerness_on_reg = centerness_on_reg
        self.norm_reg_targets = norm_reg_targets
        for name, n in (('cls', num_cls_convs), ('bbox', num_box_convs),
                        ('share', num_share_convs)):
            tower = []
            for _ in range(n):
                tower.append(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=True))
                if norm == 'GN':
                    tower.append(nn.GroupNorm(norm_groups, in_channels))
                tower.append(nn.ReLU())
            self.add_module(f'{name}_tower', nn.Sequential(*tower))
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels)) if use_scale else None
        for module in (self.cls_tower, self.bbox_tower, self.share_tower, self.cls_logits,
                       self.bbox_pred, self.ctrness):
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.constant_(layer.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: Sequence[Tensor], top_module: Optional[nn.Module] = None,
                box_towers: bool = False):
        logits, regs, ctrs, tops, towers = [], [], [], [], []
        for lvl, feat in enumerate(features):
            feat = self.share_tower(feat)
            cls_tower = self.cls_tower(feat)
            bbox_tower = self.bbox_tower(feat)
            logits.append(self.cls_logits(cls_tower))
            ctrs.append(self.ctrness(bbox_tower if self.centerness_on_reg else cls_tower))
            reg = self.bbox_pred(bbox_tower)
            if self.scales is not None:
                reg = self.scales[lvl](reg)
            regs.append(F.relu(reg) if self.norm_reg_targets else reg.exp())
            if top_module is not None:
                tops.append(top_module(bbox_tower))
            if box_towers:
                towers.append(bbox_tower)
        if box_towers:
            return logits, regs, ctrs, tops, towers
        return logits, regs, ctrs, tops


def _reduce_mean(x: Tensor) -> Tensor:
    world = comm.get_world_size()
    if world > 1:
        x = x.clone()
        torch.distributed.all_reduce(x)
        x = x / world
    return x


def _flat(maps: List[Tensor], channels: int) -> Tensor:
    """L maps (B, c, H_l, W_l) -> (B, P, c), levels concatenated (finest first)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps], 1)


# detectron2's own PROPOSAL_GENERATOR_REGISTRY (reached through the module: no second name)
@d2_modeling.PROPOSAL_GENERATOR_REGISTRY.register()
class InsplugFCOS(nn.Module):
    """FCOS (Tian et al., ICCV 2019) as a detectron2 proposal generator (see the module
    docstring for inputs and outputs).

    Args (``from_config`` reads them from ``MODEL.INSPLUG.FCOS``):
        head: :class:`InsplugFCOSHead`. in_features: names of the input levels.
        strides: stride of each level. sizes_of_interest: L - 1 range limits.
        num_classes: K. center_sample_radius: ``POS_RADIUS`` (<= 0: no centre sampling).
        loss_opts: keyword arguments of :func:`insplug.core.fcos.fcos_losses`.
        test_opts / train_opts: keyword arguments of
            :func:`insplug.core.fcos.fcos_predict_single` at test time / with
            ``yield_proposal`` in training.
        clip_before_nms: clip boxes to the image before NMS (FCOS-official, PolarMask).
        yield_proposal: also predict detections in training (centermask2's proposals).
    """

    @configurable
    def __init__(self, *, head: InsplugFCOSHead, in_features: Sequence[str],
                 strides: Sequence[int], sizes_of_interest: Sequence[float], num_classes: int,
                 center_sample_radius: float = 1.5, loss_opts: Optional[dict] = None,
                 test_opts: Optional[dict] = None, train_opts: Optional[dict] = None,
                 clip_before_nms: bool = False, yield_proposal: bool = False):
        super().__init__()
        ranges = regress_ranges_from_sizes(sizes_of_interest)
        if len(ranges) != len(strides) or len(strides) != len(in_features):
            raise ValueError(f'FCOS: {len(in_features)} in_features, {len(strides)} strides and '
                             f'{len(sizes_of_interest)} sizes_of_interest (giving '
                             f'{len(ranges)} levels) must describe the same levels')
        self.fcos_head = head
        self.in_features = list(in_features)
        self.strides = [int(s) for s in strides]
        self.regress_ranges = ranges
        self.num_classes = num_classes
        self.center_sample_radius = center_sample_radius
        self.loss_opts = dict(loss_opts or {})
        self.test_opts = dict(test_opts or {})
        self.train_opts = dict(train_opts or self.test_opts)
        self.clip_before_nms = clip_before_nms
        self.yield_proposal = yield_proposal

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        f = cfg.MODEL.INSPLUG.FCOS
        missing = [n for n in f.IN_FEATURES if n not in input_shape]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.FCOS.IN_FEATURES {list(f.IN_FEATURES)}: {missing} '
                             f'are not backbone outputs {sorted(input_shape)}')
        channels = {input_shape[n].channels for n in f.IN_FEATURES}
        if len(channels) != 1:
            raise ValueError(f'FCOS needs the same channels on every level, got {channels}')
        head = InsplugFCOSHead(
            channels.pop(), f.NUM_CLASSES, f.NUM_CLS_CONVS, f.NUM_BOX_CONVS, f.NUM_SHARE_CONVS,
            None if f.NORM in ('none', '') else f.NORM, f.NORM_GROUPS, f.USE_SCALE,
            len(f.IN_FEATURES), f.PRIOR_PROB, f.CENTERNESS_ON_REG, f.NORM_REG_TARGETS)

        def opts(th, pre, post):
            return dict(score_thr=th, nms_pre=pre, max_per_img=post, nms_thr=f.NMS_TH,
                        thresh_with_ctr=f.THRESH_WITH_CTR, candidate_mode=f.CANDIDATE_MODE,
                        score=f.SCORE)

        return dict(
            head=head, in_features=list(f.IN_FEATURES), strides=list(f.FPN_STRIDES),
            sizes_of_interest=list(f.SIZES_OF_INTEREST), num_classes=f.NUM_CLASSES,
            center_sample_radius=f.POS_RADIUS if f.CENTER_SAMPLE else 0.0,
            loss_opts=dict(loss_type=f.LOC_LOSS_TYPE, iou_smooth=f.IOU_SMOOTH,
                           box_quality=f.BOX_QUALITY, cls_normalizer=f.LOSS_NORMALIZER_CLS,
                           focal_alpha=f.LOSS_ALPHA, focal_gamma=f.LOSS_GAMMA,
                           loss_weight_cls=f.LOSS_WEIGHT_CLS),
            test_opts=opts(f.INFERENCE_TH_TEST, f.PRE_NMS_TOPK_TEST, f.POST_NMS_TOPK_TEST),
            train_opts=opts(f.INFERENCE_TH_TRAIN, f.PRE_NMS_TOPK_TRAIN, f.POST_NMS_TOPK_TRAIN),
            clip_before_nms=f.CLIP_BEFORE_NMS, yield_proposal=f.YIELD_PROPOSAL)

    # ------------------------------------------------------------------ parts
    def forward_head(self, features: Dict[str, Tensor], top_module: Optional[nn.Module] = None,
                     box_towers: bool = False):
        """Raw outputs: per-level lists (see :class:`InsplugFCOSHead`)."""
        return self.fcos_head([features[n] for n in self.in_features], top_module, box_towers)

    def locations(self, logits: List[Tensor]) -> List[Tensor]:
        """L tensors (P_l, 2) of point coordinates."""
        return fcos_locations([x.shape[-2:] for x in logits], self.strides, logits[0].dtype,
                              logits[0].device)

    def targets(self, locations: List[Tensor], gt_instances: List[Instances],
                extra_valid: Optional[List[Optional[Tensor]]] = None):
        """Per image: labels (P,) (K = background), reg targets (P, 4) (stride units with
        ``norm_reg_targets``, else pixels), gt_inds (P,) (-1 background).

        ``extra_valid``: optional per-image (P, G) bool further restricting the candidates
        (e.g. EmbedMask's "point on the object's mask"); None entries: no restriction."""
        pts, pstr, rng = level_point_info(locations, self.strides, self.regress_ranges)
        out = []
        for i, gt in enumerate(gt_instances):
            labels, reg, inds = fcos_targets(pts, pstr, rng, gt.gt_boxes.tensor.to(pts.dtype),
                                             gt.gt_classes, self.num_classes,
                                             self.center_sample_radius,
                                             extra_valid=None if extra_valid is None
                                             else extra_valid[i])
            if self.fcos_head.norm_reg_targets:
                reg = reg / pstr[:, None]
            out.append((labels, reg, inds))
        return out

    def losses(self, logits, regs, ctrs, tops, locations, gt_instances, targets=None):
        """(extras dict, loss dict) of a training batch (module docstring); ``targets``:
        the output of :meth:`targets` (computed here when None)."""
        num_imgs = logits[0].shape[0]
        if targets is None:
            targets = self.targets(locations, gt_instances)
        cls = _flat(logits, self.num_classes)
        labels = torch.stack([t[0] for t in targets]).reshape(-1)
        reg_t = torch.stack([t[1] for t in targets]).reshape(-1, 4)
        gt_inds = torch.stack([t[2] for t in targets]).reshape(-1)
        losses, extras = fcos_losses(
            cls.reshape(-1, self.num_classes), _flat(regs, 4).reshape(-1, 4),
            _flat(ctrs, 1).reshape(-1), labels, reg_t, self.num_classes,
            reduce_mean=_reduce_mean, **self.loss_opts)
        num_points = cls.shape[1]
        pos = extras['pos_inds']
        point = pos % num_points
        lvl = torch.cat([torch.full((p.shape[0],), i, dtype=torch.long, device=p.device)
                         for i, p in enumerate(locations)])
        strides = logits[0].new_tensor(self.strides)[lvl[point]]
        inst = Instances((0, 0))
        inst.im_inds = pos // num_points
        inst.gt_inds = gt_inds[pos]
        inst.labels = labels[pos]
        inst.point_inds = point
        inst.locations = torch.cat(locations)[point]
        inst.fpn_levels = lvl[point]
        inst.reg_targets = reg_t[pos] * (strides[:, None] if self.fcos_head.norm_reg_targets
                                         else 1)
        inst.gt_ctrs = extras['ctr_targets']
        if tops:
            inst.top_feats = _flat(tops, tops[0].shape[1]).reshape(-1, tops[0].shape[1])[pos]
        results = dict(instances=inst, loss_denorm=extras['loss_denorm'],
                       num_pos_avg=extras['num_pos_avg'])
        return results, {LOSS_NAMES[k]: v for k, v in losses.items()}

    def predict(self, logits, regs, ctrs, tops, locations, image_sizes,
                opts: Optional[dict] = None) -> List[Instances]:
        """Per-image detections from raw outputs (``opts``: test options by default)."""
        opts = self.test_opts if opts is None else opts
        scale = self.strides if self.fcos_head.norm_reg_targets else [1] * len(self.strides)
        all_points = torch.cat(locations)
        out = []
        for i, size in enumerate(image_sizes):
            det = fcos_predict_single(
                [c[i].permute(1, 2, 0).reshape(-1, self.num_classes) for c in logits],
                [r[i].permute(1, 2, 0).reshape(-1, 4) * s for r, s in zip(regs, scale)],
                [t[i].reshape(-1) for t in ctrs], locations,
                clip_hw=tuple(size) if self.clip_before_nms else None, **opts)
            inst = Instances(tuple(size))
            inst.pred_boxes = Boxes(det['bboxes'])
            inst.proposal_boxes = inst.pred_boxes
            inst.scores = det['scores']
            inst.pred_classes = det['labels']
            inst.locations = all_points[det['point_inds']]
            inst.fpn_levels = det['levels']
            inst.point_inds = det['point_inds']
            if tops:
                inst.top_feats = torch.cat([t[i].permute(1, 2, 0).reshape(-1, t.shape[1])
                                            for t in tops])[det['point_inds']]
            out.append(inst)
        return out

    def forward(self, images, features: Dict[str, Tensor],
                gt_instances: Optional[List[Instances]] = None,
                top_module: Optional[nn.Module] = None):
        logits, regs, ctrs, tops = self.forward_head(features, top_module)
        locations = self.locations(logits)
        if self.training:
            if gt_instances is None:
                raise ValueError('InsplugFCOS needs gt_instances in training')
            results, losses = self.losses(logits, regs, ctrs, tops, locations, gt_instances)
            if self.yield_proposal:
                with torch.no_grad():
                    results['proposals'] = self.predict(
                        [x.detach() for x in logits], [x.detach() for x in regs],
                        [x.detach() for x in ctrs], [x.detach() for x in tops], locations,
                        images.image_sizes, self.train_opts)
            return results, losses
        return self.predict(logits, regs, ctrs, tops, locations, images.image_sizes), {}


class LastLevelP6(nn.Module):
    """P6 only (conv3x3 stride 2 on P5), AdelaiDet's ``LastLevelP6`` (``TOP_LEVELS: 1``)."""

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = 'p5'):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        import fvcore.nn.weight_init as weight_init
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x: Tensor) -> List[Tensor]:
        return [self.p6(x)]


@BACKBONE_REGISTRY.register()
def build_insplug_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet + FPN (``MODEL.FPN.IN_FEATURES``, e.g. res3-res5 -> p3-p5) + P6/P7 from P5
    (``MODEL.INSPLUG.FCOS.TOP_LEVELS``: 2 -> P6 and P7 with a ReLU between, 1 -> P6, 0 ->
    none): AdelaiDet's ``build_fcos_resnet_fpn_backbone`` (same module names)."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    levels = cfg.MODEL.INSPLUG.FCOS.TOP_LEVELS
    if levels == 2:
        top_block = LastLevelP6P7(out_channels, out_channels, 'p5')
    elif levels == 1:
        top_block = LastLevelP6(out_channels, out_channels, 'p5')
    elif levels == 0:
        top_block = None
    else:
        raise ValueError(f'MODEL.INSPLUG.FCOS.TOP_LEVELS must be 0, 1 or 2, got {levels}')
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=out_channels, norm=cfg.MODEL.FPN.NORM, top_block=top_block,
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
