"""BlendMask for detectron2: the ``InsplugBlendMask`` meta-architecture (META_ARCH_REGISTRY).

Shapes: B images, K bases (4), M attention size (14), R blender resolution (56), N positive
locations (training) or detections (inference) of the batch, C thing classes.

Placement as AdelaiDet's ``BlendMask``: backbone (``build_insplug_fcos_resnet_fpn_backbone``,
P3-P7) -> proposal generator :class:`~insplug.detectron2.fcos.InsplugFCOS` with the model's
``top_layer`` (conv3x3 on the box tower, K * M * M attentions per location) -> basis module
(:class:`InsplugBasisModule`: the bases = :class:`insplug.core.layers.protonet.ProtoNetEncoder`
over P3-P5, and the auxiliary semantic head on P3) -> blender
(:mod:`insplug.core.blendmask.blender`: RoIAlign of the bases in the boxes, attention
softmax, weighted sum; centerness-weighted mask BCE / FCOS ``loss_denorm``). The mask targets
are detectron2's ``gt_masks.crop_and_resize`` (polygons rasterised in the box, bitmaps
RoIAligned, as AdelaiDet); the final masks follow detectron2's ``detector_postprocess``, the
function AdelaiDet calls (scale, clip, drop empty boxes, paste, ``>= 0.5``), computed with
:func:`insplug.core.fcos.rescale_clip_boxes` and the shared windowed paste
:func:`insplug.core.postprocess.paste.paste_masks_in_boxes` (no per-box loop), as the mmdet
adapter does.

Losses: ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``, ``loss_mask`` and
``loss_basis_sem`` (AdelaiDet's names).

The semantic target is the "thing" map (background 0, class c -> c + 1, later annotation wins)
at stride 8: from ``basis_sem`` in the input dicts when a mapper provides it (AdelaiDet's
``prepare_thing_sem_from_instance.py`` maps, crowd included), otherwise painted here from the
image's ground-truth masks (detectron2's ``DatasetMapper`` has already dropped crowd objects).

yacs::

    MODEL.META_ARCHITECTURE: InsplugBlendMask
    MODEL.PROPOSAL_GENERATOR.NAME: InsplugFCOS
    MODEL.INSPLUG.FCOS.*   (USE_SCALE: False, THRESH_WITH_CTR: True as Base-BlendMask.yaml)
    MODEL.INSPLUG.BLENDMASK.*
"""
from typing import Dict, List, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from torch import Tensor, nn

from insplug.core.blendmask import blender as B
from insplug.core.blendmask.semantic_head import SemanticHead
from insplug.core.fcos import rescale_clip_boxes
from insplug.core.layers.protonet import ProtoNetEncoder
from insplug.core.postprocess.paste import paste_masks_in_boxes
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .fcos import InsplugFCOS
from .masks import instances_mask_tensor

__all__ = ['InsplugBlendMask', 'InsplugBasisModule', 'build_top_layer', 'BLENDMASK_DEFAULTS']

# BlendMask's defaults that the core has no default argument for (AdelaiDet
# adet/config/defaults.py MODEL.BLENDMASK / MODEL.BASIS_MODULE; equal to the mmdet
# BlendMaskHead's defaults, which a test checks)
BLENDMASK_DEFAULTS = dict(num_bases=4, convs_dim=128, num_convs=3, in_features=('p3', 'p4', 'p5'),
                          bases_stride=4, semantic_stride=8, loss_mask_weight=1.0, mask_thr=0.5)


@register_config_node('BLENDMASK')
def _blendmask_node():
    d = BLENDMASK_DEFAULTS
    pool = signature_defaults(B.pool_bases)
    node = CN()
    node.ATTN_SIZE = signature_defaults(B.blend)['attn_size']
    node.BOTTOM_RESOLUTION = pool['resolution']
    node.POOLER_SAMPLING_RATIO = pool['sampling_ratio']
    node.BASES_STRIDE = d['bases_stride']  # AdelaiDet POOLER_SCALES (0.25,) = 1 / 4
    node.INSTANCE_LOSS_WEIGHT = d['loss_mask_weight']
    node.MASK_THRESHOLD = d['mask_thr']
    node.BASIS = CN()
    node.BASIS.IN_FEATURES = list(d['in_features'])
    node.BASIS.NUM_BASES = d['num_bases']
    node.BASIS.CONVS_DIM = d['convs_dim']
    node.BASIS.NUM_CONVS = d['num_convs']
    # 'SyncBN' (AdelaiDet): SyncBatchNorm in a distributed run, BatchNorm otherwise; 'BN'
    node.BASIS.NORM = 'SyncBN'
    node.BASIS.LOSS_ON = True
    node.BASIS.LOSS_WEIGHT = signature_defaults(B.semantic_loss)['weight']
    node.BASIS.SEMANTIC_STRIDE = d['semantic_stride']  # AdelaiDet COMMON_STRIDE
    return node


def build_top_layer(in_channels: int, num_bases: int = 4, attn_size: int = 14) -> nn.Conv2d:
    """BlendMask's top layer: conv3x3 ``in_channels -> num_bases * attn_size ** 2``,
    N(0, 0.01) weights, zero bias (AdelaiDet)."""
    layer = nn.Conv2d(in_channels, num_bases * attn_size ** 2, 3, padding=1)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.constant_(layer.bias, 0)
    return layer


class InsplugBasisModule(nn.Module):
    """AdelaiDet's basis module: bases from P3-P5 and (training) semantic logits from P3.

    Args:
        in_channels: FPN channels. num_classes: C thing classes.
        num_bases: K. convs_dim: hidden width (128). num_convs: tower convs (3).
        num_levels: input levels (3). norm: 'BN' or 'SyncBN' (SyncBatchNorm when distributed).
        loss_on: build the semantic head.

    Forward: L maps (B, C_in, H_l, W_l) -> bases (B, K, 2 H_0, 2 W_0), semantic logits
    (B, C + 1, H_0, W_0) or None.
    """

    def __init__(self, in_channels: int, num_classes: int, num_bases: int = 4,
                 convs_dim: int = 128, num_convs: int = 3, num_levels: int = 3,
                 norm: str = 'SyncBN', loss_on: bool = True):
        super().__init__()
        if norm not in ('BN', 'SyncBN'):
            raise ValueError(f"MODEL.INSPLUG.BLENDMASK.BASIS.NORM must be 'BN' or 'SyncBN', "
                             f"got {norm!r}")
        self.bottom_module = ProtoNetEncoder(
            in_channels, convs_dim, num_bases, num_convs, tuple(range(num_levels)),
            level_convs=True, norm='BN', proto_activation=None, init='kaiming')
        # AdelaiDet's last 1x1 basis conv keeps PyTorch's default initialisation
        self.bottom_module.proto_conv.reset_parameters()
        if norm == 'SyncBN' and comm.get_world_size() > 1:
            self.bottom_module = nn.SyncBatchNorm.convert_sync_batchnorm(self.bottom_module)
        self.semantic_head = SemanticHead(in_channels, num_classes, convs_dim) \
            if loss_on else None

    def forward(self, feats: Sequence[Tensor]):
        sem = self.semantic_head(feats[0]) \
            if self.semantic_head is not None and self.training else None
        return self.bottom_module(feats), sem


@META_ARCH_REGISTRY.register()
class InsplugBlendMask(NormalisedInputs, nn.Module):
    """BlendMask (Chen et al., CVPR 2020) as a detectron2 meta-architecture (module
    docstring).

    Args:
        backbone: detectron2 ``Backbone``. proposal_generator: :class:`InsplugFCOS`.
        basis_module: :class:`InsplugBasisModule`. basis_in_features: its input names.
        top_layer: conv (FPN channels -> K * M * M).
        attn_size: M. bottom_resolution: R. bases_stride: 4. pooler_sampling_ratio: 1.
        instance_loss_weight: multiplies ``loss_mask``. semantic_loss_weight: 0.3.
        semantic_stride: 8. mask_threshold: 0.5.
        pixel_mean, pixel_std: input normalisation.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, proposal_generator: InsplugFCOS,
                 basis_module: InsplugBasisModule, basis_in_features: Sequence[str],
                 top_layer: nn.Module, attn_size: int = 14, bottom_resolution: int = 56,
                 bases_stride: int = 4, pooler_sampling_ratio: int = 1,
                 instance_loss_weight: float = 1.0, semantic_loss_weight: float = 0.3,
                 semantic_stride: int = 8, mask_threshold: float = 0.5,
                 pixel_mean: Sequence[float] = (103.530, 116.280, 123.675),
                 pixel_std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__()
        if not isinstance(proposal_generator, InsplugFCOS):
            raise TypeError('InsplugBlendMask needs MODEL.PROPOSAL_GENERATOR.NAME: InsplugFCOS, '
                            f'got {type(proposal_generator).__name__}')
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.basis_module = basis_module
        self.top_layer = top_layer
        self.basis_in_features = list(basis_in_features)
        self.attn_size, self.bottom_resolution = attn_size, bottom_resolution
        self.bases_stride, self.pooler_sampling_ratio = bases_stride, pooler_sampling_ratio
        self.instance_loss_weight = instance_loss_weight
        self.semantic_loss_weight = semantic_loss_weight
        self.semantic_stride = semantic_stride
        self.mask_threshold = mask_threshold
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        b = cfg.MODEL.INSPLUG.BLENDMASK
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in b.BASIS.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.BLENDMASK.BASIS.IN_FEATURES: {missing} are not '
                             f'backbone outputs {sorted(shapes)}')
        in_channels = shapes[b.BASIS.IN_FEATURES[0]].channels
        num_classes = cfg.MODEL.INSPLUG.FCOS.NUM_CLASSES
        top_layer = build_top_layer(in_channels, b.BASIS.NUM_BASES, b.ATTN_SIZE)
        return dict(
            backbone=backbone, proposal_generator=build_proposal_generator(cfg, shapes),
            basis_module=InsplugBasisModule(
                in_channels, num_classes, b.BASIS.NUM_BASES, b.BASIS.CONVS_DIM,
                b.BASIS.NUM_CONVS, len(b.BASIS.IN_FEATURES), b.BASIS.NORM, b.BASIS.LOSS_ON),
            basis_in_features=list(b.BASIS.IN_FEATURES), top_layer=top_layer,
            attn_size=b.ATTN_SIZE, bottom_resolution=b.BOTTOM_RESOLUTION,
            bases_stride=b.BASES_STRIDE, pooler_sampling_ratio=b.POOLER_SAMPLING_RATIO,
            instance_loss_weight=b.INSTANCE_LOSS_WEIGHT,
            semantic_loss_weight=b.BASIS.LOSS_WEIGHT, semantic_stride=b.BASIS.SEMANTIC_STRIDE,
            mask_threshold=b.MASK_THRESHOLD, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD))

    def blend(self, bases: Tensor, boxes: Tensor, batch_inds: Tensor, attns: Tensor) -> Tensor:
        """(N, R, R) mask logits of N boxes (input pixels) of images ``batch_inds``."""
        rois = B.pool_bases(bases, boxes.to(bases.dtype), batch_inds, self.bottom_resolution,
                            1.0 / self.bases_stride, self.pooler_sampling_ratio)
        return B.blend(rois, attns, self.attn_size)

    # ------------------------------------------------------------------ training
    def mask_loss(self, bases: Tensor, positives: dict, gt_instances: List[Instances]) -> Tensor:
        pos = positives['instances']
        if len(pos) == 0:  # official: zero-valued, graph connected
            return bases.sum() * 0 + (pos.top_feats.sum() * 0 if pos.has('top_feats') else 0)
        boxes, targets = [], []
        for i, gt in enumerate(gt_instances):
            inds = pos.gt_inds[pos.im_inds == i]
            if inds.numel() == 0:
                continue
            gt_boxes = gt.gt_boxes.tensor
            # crop every GT once (detectron2's crop_and_resize, as AdelaiDet), gather
            crops = gt.gt_masks.crop_and_resize(gt_boxes, self.bottom_resolution).to(bases.device)
            boxes.append(gt_boxes[inds])
            targets.append(crops[inds])
        # InsplugFCOS's positives are image-major (sorted by im_inds), as the lists above
        logits = self.blend(bases, torch.cat(boxes), pos.im_inds, pos.top_feats)
        return B.blender_mask_loss(logits, torch.cat(targets).to(logits.dtype), pos.gt_ctrs,
                                   positives['loss_denorm'])

    def semantic_targets(self, batched_inputs, gt_instances, size) -> Tensor:
        """(B, h, w) thing maps at the semantic logits' size."""
        out = []
        for x, gt in zip(batched_inputs, gt_instances):
            if 'basis_sem' in x:
                sem = x['basis_sem'].to(self.device).long()
            else:
                sem = B.thing_semantic_map(instances_mask_tensor(gt, self.device),
                                           gt.gt_classes.to(self.device))
            out.append(B.downsample_semantic(sem, self.semantic_stride, size))
        return torch.stack(out)

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances`` (``pred_masks`` bool at the output size, ``pred_boxes``, ``scores``,
        ``pred_classes``)."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        bases, sem_logits = self.basis_module([features[f] for f in self.basis_in_features])
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('BlendMask training needs "instances" in every input dict')
            gt_instances = [x['instances'].to(self.device) for x in batched_inputs]
            positives, losses = self.proposal_generator(images, features, gt_instances,
                                                        self.top_layer)
            losses['loss_mask'] = self.mask_loss(bases, positives, gt_instances) \
                * self.instance_loss_weight
            if sem_logits is not None:
                targets = self.semantic_targets(batched_inputs, gt_instances,
                                                sem_logits.shape[-2:])
                losses['loss_basis_sem'] = B.semantic_loss(sem_logits, targets,
                                                           self.semantic_loss_weight)
            return losses
        detections, _ = self.proposal_generator(images, features, None, self.top_layer)
        return self.inference(bases, detections, batched_inputs, images.image_sizes)

    # ------------------------------------------------------------------ inference
    def inference(self, bases: Tensor, detections: List[Instances], batched_inputs,
                  image_sizes) -> List[Dict[str, Instances]]:
        """Blend the bases in the (unclipped) detection boxes, then detectron2's
        ``detector_postprocess`` steps at the requested output size."""
        boxes = torch.cat([d.pred_boxes.tensor for d in detections])
        batch_inds = torch.cat([torch.full((len(d),), i, dtype=torch.long, device=self.device)
                                for i, d in enumerate(detections)])
        r = self.bottom_resolution
        if boxes.numel():
            probs = self.blend(bases, boxes, batch_inds,
                               torch.cat([d.top_feats for d in detections])).sigmoid()
        else:
            probs = bases.new_zeros((0, r, r))
        out = []
        for i, (det, x, size) in enumerate(zip(detections, batched_inputs, image_sizes)):
            height, width = x.get('height', size[0]), x.get('width', size[1])
            # detectron2 detector_postprocess: scale, clip, drop empty boxes, paste (float32,
            # detectron2's geometry) into the clipped boxes, >= threshold; the shared windowed
            # paste (insplug.core.postprocess.paste) avoids detectron2's per-box CPU loop
            boxes, keep = rescale_clip_boxes(det.pred_boxes.tensor,
                                             (width / size[1], height / size[0]),
                                             (height, width))
            inst = Instances((height, width))
            inst.pred_boxes = Boxes(boxes[keep])
            inst.scores = det.scores[keep]
            inst.pred_classes = det.pred_classes[keep]
            inst.pred_masks = paste_masks_in_boxes(probs[batch_inds == i][keep], boxes[keep],
                                                   height, width, self.mask_threshold,
                                                   dtype=torch.float32)
            out.append({'instances': inst})
        return out

