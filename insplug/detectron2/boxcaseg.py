"""BoxCaseg (Wang et al., CVPR 2021) in detectron2: ``InsplugBoxCaseg`` (META_ARCH), the
boxes-only dataset view and a box-conditioned test mapper.

The maths is :mod:`insplug.core.boxcaseg` (crops, head, losses, inference), shared with the
mmdet ``BoxCaseg``. The trunk is any detectron2 backbone whose ``IN_FEATURES`` are
concatenated after bilinear upsampling to the finest one (HRNet's head input); with a ResNet,
``to_detectron2`` of the ``boxcaseg`` converter maps an mmdet ``BoxCaseg`` checkpoint (the
release's HRNet trunk has no detectron2 counterpart here: use the mmdet model for it).

Training inputs: box images carry ``instances.gt_boxes`` only (register them with
:func:`register_boxes_only`, which drops every ``segmentation``), salient images carry
``gt_masks`` too. Inference is box-conditioned: each input's ``instances.gt_boxes`` (and
``gt_classes``) are segmented; :func:`build_box_conditioned_mapper` keeps the annotations of a
test set (detectron2's test mapper drops them).
"""
import copy
from typing import Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from insplug.core.boxcaseg.crops import crop_and_resize, training_crops
from insplug.core.boxcaseg.inference import crop_masks_to_image
from insplug.core.boxcaseg.loss import PAIRWISE_WEIGHT
from insplug.core.boxcaseg.network import BoxCasegHead, concat_upsample
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults

__all__ = ['InsplugBoxCaseg', 'boxes_only', 'register_boxes_only',
           'build_box_conditioned_mapper']


@register_config_node('BOXCASEG')
def _boxcaseg_node():
    head = signature_defaults(BoxCasegHead)
    node = CN()
    node.IN_FEATURES = ['res2', 'res3', 'res4', 'res5']
    node.CROP_SIZE = 288
    node.FCN_RATIO = head['fcn_ratio']
    node.FINAL_KERNEL = head['final_kernel']
    node.PAIRWISE_WEIGHT = PAIRWISE_WEIGHT
    node.MAX_BOX_CROPS = 0   # 0: every box of the batch is a crop
    node.MASK_THRESHOLD = signature_defaults(crop_masks_to_image)['threshold']
    return node


# --------------------------------------------------------------------------- data
def boxes_only(records):
    """Dataset dicts with every annotation's ``segmentation`` removed (boxes and labels kept)."""
    out = copy.deepcopy(records)
    for r in out:
        for a in r.get('annotations', []):
            a.pop('segmentation', None)
    return out


def register_boxes_only(name, source):
    """Register ``name`` as the boxes-only view of the registered dataset ``source`` (same
    metadata: evaluation still reads ``source``'s json with its masks)."""
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: boxes_only(DatasetCatalog.get(source)))
        meta = MetadataCatalog.get(source).as_dict()
        meta.pop('name', None)
        MetadataCatalog.get(name).set(**meta)
    return name


def build_box_conditioned_mapper(cfg):
    """The test-time ``DatasetMapper`` (test resize, no flips) that keeps the annotations'
    boxes, so ``InsplugBoxCaseg`` can segment them (boxes only: masks are not loaded)."""
    mapper = DatasetMapper(cfg, is_train=False)
    mapper.is_train = True          # keep annotations (only this flag drops them)
    mapper.use_instance_mask = False
    return mapper


# --------------------------------------------------------------------------- meta-arch
@META_ARCH_REGISTRY.register()
class InsplugBoxCaseg(NormalisedInputs, nn.Module):
    """Class-agnostic box-to-mask segmenter of the BoxCaseg release.

    Args:
        backbone: a detectron2 ``Backbone``.
        in_features: its outputs concatenated (finest first).
        crop_size, fcn_ratio, final_kernel, pairwise_weight, max_box_crops, mask_threshold:
            as the mmdet ``BoxCaseg`` (0 ``max_box_crops``: no cap).
        pixel_mean, pixel_std: input normalisation.
    """

    # no class output: the masks take the classes of the boxes they segment (train_net skips
    # its class-count check)
    class_agnostic = True

    @configurable
    def __init__(self, *, backbone: Backbone, in_features: Sequence[str], crop_size: int,
                 pixel_mean, pixel_std, fcn_ratio=0.7, final_kernel=1,
                 pairwise_weight=PAIRWISE_WEIGHT, max_box_crops=0, mask_threshold=0.5):
        super().__init__()
        self.backbone = backbone
        self.in_features = list(in_features)
        shapes = backbone.output_shape()
        self.head = BoxCasegHead(sum(shapes[f].channels for f in self.in_features),
                                 fcn_ratio=fcn_ratio, final_kernel=final_kernel)
        self.crop_size = crop_size
        self.pairwise_weight = pairwise_weight
        self.max_box_crops = max_box_crops or None
        self.mask_threshold = mask_threshold
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        b = cfg.MODEL.INSPLUG.BOXCASEG
        return dict(backbone=build_backbone(cfg), in_features=list(b.IN_FEATURES),
                    crop_size=b.CROP_SIZE, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
                    pixel_std=list(cfg.MODEL.PIXEL_STD), fcn_ratio=b.FCN_RATIO,
                    final_kernel=b.FINAL_KERNEL, pairwise_weight=b.PAIRWISE_WEIGHT,
                    max_box_crops=b.MAX_BOX_CROPS, mask_threshold=b.MASK_THRESHOLD)

    def extract_feat(self, crops):
        feats = self.backbone(crops)
        return concat_upsample([feats[f] for f in self.in_features])

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        insts = [x['instances'].to(self.device) for x in batched_inputs]
        if self.training:
            masks = [i.gt_masks.tensor.any(dim=0) if i.has('gt_masks') and len(i) else None
                     for i in insts]
            crops, labels, salient = training_crops(
                images.tensor, [i.gt_boxes.tensor for i in insts], images.image_sizes, masks,
                self.crop_size, self.max_box_crops)
            return self.head.loss(self.extract_feat(crops), labels, salient,
                                  self.pairwise_weight)
        return self.inference(images, insts, batched_inputs)

    def inference(self, images, insts, batched_inputs):
        boxes = [i.gt_boxes.tensor.float() for i in insts]
        idx = torch.cat([torch.full((len(b),), k, dtype=torch.long, device=self.device)
                         for k, b in enumerate(boxes)])
        if len(idx):
            probs = self.head.predict_probs(self.extract_feat(
                crop_and_resize(images.tensor, idx, torch.cat(boxes), self.crop_size)))
        out = []
        for k, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            h, w = x.get('height', size[0]), x.get('width', size[1])
            scale = boxes[k].new_tensor([w / size[1], h / size[0]]).repeat(2)
            b = boxes[k] * scale
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(b)
            inst.scores = b.new_ones(len(b))
            inst.pred_classes = insts[k].gt_classes
            inst.pred_masks = (crop_masks_to_image(probs[idx == k], b, h, w,
                                                   self.mask_threshold) if len(b) else
                               torch.zeros((0, h, w), dtype=torch.bool, device=self.device))
            out.append({'instances': inst})
        return out
