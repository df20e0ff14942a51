"""PRM and CountSeg in detectron2: META_ARCHs ``InsplugPRM`` / ``InsplugCountSeg``, the
image-level dataset view and the proposal sources.

The wiring (1x1 heads, maps, image-level losses, peak back-propagation and proposal
retrieval) is :mod:`insplug.core.prm.model`, shared with the mmdet ``PRMSegmentor`` /
``CountSegSegmentor``; the state-dict keys are the same apart from the trunk
(:func:`mmdet_to_detectron2` maps an mmdet ResNet trunk to detectron2's).

Training data: :func:`register_image_labels` registers the image-level view of a registered
COCO-format set: each record keeps its image and gains ``image_labels`` (K multi-hot, crowd
instances included) and ``image_counts`` (K, non-crowd instances), and its ``annotations`` are
DELETED, so detectron2's ``DatasetMapper`` produces no ``instances`` and no box or mask reaches
the model (set ``DATALOADER.FILTER_EMPTY_ANNOTATIONS: False``: no record has annotations).
Evaluation uses the full masks of the source set through ``COCOEvaluator``.

Proposals (``MODEL.INSPLUG.PRM.PROPOSALS``; the release's MCG proposals are not available,
see docs/deviations/prm.md): ``SOURCE: "colour"`` (colour regions of the input image,
``INPUT.FORMAT`` must be "RGB" to match the mmdet model) or ``"file"`` (``FILE``: JSON
``{image file name: [COCO RLE, ...]}``).
"""
import copy
import json
import os.path as osp

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.prm.labels import image_labels_and_counts
from insplug.core.prm.model import (COUNTSEG_TEST_CFG, COUNTSEG_TRAIN_CFG, PRM_TEST_CFG,
                                    PRM_TRAIN_CFG, CountSegMaps, PRMMaps, rescale_masks)
from insplug.core.prm.proposals import (colour_proposals_on_input_grid, colour_region_proposals,
                                        file_proposals)
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults

__all__ = ['InsplugPRM', 'InsplugCountSeg', 'image_labels_only', 'register_image_labels',
           'mmdet_to_detectron2']


# --------------------------------------------------------------------------- config
def _cfg_node(defaults):
    node = CN()
    for key, value in defaults.items():
        node[key.upper()] = list(value) if isinstance(value, tuple) else value
    return node


def _from_node(node):
    return {k.lower(): tuple(v) if isinstance(v, list) else v for k, v in node.items()}


def _method_node(train, test, **extra):
    node = CN()
    node.NUM_CLASSES = 20
    node.IN_FEATURE = 'res5'
    node.SIZE_DIVISIBILITY = 32
    for key, value in extra.items():
        node[key] = value
    node.TRAIN = _cfg_node(train)
    node.TEST = _cfg_node(test)
    props = CN()
    props.SOURCE = 'colour'          # 'colour' or 'file'
    props.FILE = ''
    props.MISSING = 'error'          # 'error' or 'empty' for an image absent from FILE
    colour = signature_defaults(colour_region_proposals)
    props.STEPS = list(colour['steps'])
    props.MIN_AREA = colour['min_area']
    props.MAX_FRACTION = colour['max_fraction']
    props.MAX_PROPOSALS = colour['max_proposals']
    node.PROPOSALS = props
    return node


@register_config_node('PRM')
def _prm_node():
    return _method_node(PRM_TRAIN_CFG, PRM_TEST_CFG)


@register_config_node('COUNTSEG')
def _countseg_node():
    return _method_node(COUNTSEG_TRAIN_CFG, COUNTSEG_TEST_CFG, FC_CHANNELS=0)  # 0: 3 K


# --------------------------------------------------------------------------- data
def image_labels_only(records, num_classes):
    """Dataset dicts with ``image_labels`` / ``image_counts`` (lists of K) added and every
    ``annotations`` list removed (the source records are untouched)."""
    out = []
    for r in records:
        r = copy.deepcopy(r)
        anns = r.pop('annotations', [])
        labels, counts = image_labels_and_counts(
            [a['category_id'] for a in anns], [bool(a.get('iscrowd', 0)) for a in anns],
            num_classes)
        r['image_labels'], r['image_counts'] = labels.tolist(), counts.tolist()
        out.append(r)
    return out


def register_image_labels(name, source):
    """Register ``name`` as the image-level view of the registered dataset ``source`` (same
    metadata; K = ``len(thing_classes)``)."""
    if name not in DatasetCatalog.list():
        meta = MetadataCatalog.get(source).as_dict()
        meta.pop('name', None)
        k = len(meta['thing_classes'])
        DatasetCatalog.register(name, lambda: image_labels_only(DatasetCatalog.get(source), k))
        MetadataCatalog.get(name).set(**meta)
    return name


def mmdet_to_detectron2(state_dict):
    """insplug mmdet ``PRMSegmentor`` / ``CountSegSegmentor`` with an mmdet ResNet trunk -> the
    detectron2 layout (detectron2 ResNet ``backbone``; head keys unchanged)."""
    from insplug.converters.common import rename_keys
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = (mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.')
             + [(r'^((classifier|cls_branch|density_branch)\..+)$', r'\1')])
    return rename_keys(state_dict, rules, method='prm (to detectron2)')


# --------------------------------------------------------------------------- meta-archs
class _ProposalSource:
    def __init__(self, source='colour', file='', missing='error', **colour):
        if source not in ('colour', 'file'):
            raise ValueError(f"PROPOSALS.SOURCE must be 'colour' or 'file', got {source!r}")
        self.source, self.missing, self.colour = source, missing, colour
        self.table = None
        if source == 'file':
            with open(file) as f:
                self.table = json.load(f)

    def __call__(self, raw, x, img_shape):
        """raw: (3, H, W) de-normalised padded input (0-255); x: the input dict."""
        if self.source == 'colour':
            return colour_proposals_on_input_grid(raw.float(), img_shape, **self.colour)
        ori = (x.get('height', img_shape[0]), x.get('width', img_shape[1]))
        return file_proposals(self.table, osp.basename(x['file_name']), ori, img_shape,
                              raw.shape[-2:], self.missing).to(raw.device)


@META_ARCH_REGISTRY.register()
class InsplugPRM(PRMMaps, NormalisedInputs, nn.Module):
    """Peak Response Mapping (Zhou et al., CVPR 2018), trained from ``image_labels``.

    Args:
        backbone: a detectron2 ``Backbone``; in_feature: its output used.
        num_classes: K. train_cfg / test_cfg: override the core defaults.
        proposals: kwargs of the proposal source (see the module docstring).
        size_divisibility: input padding; pixel_mean / pixel_std: normalisation.
    """
    num_classes_key = 'MODEL.INSPLUG.PRM.NUM_CLASSES'
    node = 'PRM'
    default_train_cfg = PRM_TRAIN_CFG
    default_test_cfg = PRM_TEST_CFG
    target_key = 'image_labels'

    @configurable
    def __init__(self, *, backbone: Backbone, in_feature: str, num_classes: int, pixel_mean,
                 pixel_std, train_cfg=None, test_cfg=None, proposals=None,
                 size_divisibility=32, fc_channels=None):
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.num_classes = num_classes
        self._fc_channels = fc_channels or None
        self._build_heads(backbone.output_shape()[in_feature].channels)
        self.train_cfg = dict(self.default_train_cfg, **(train_cfg or {}))
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        self.proposal_source = _ProposalSource(**(proposals or {}))
        self.size_divisibility = size_divisibility
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        n = cfg.MODEL.INSPLUG[cls.node]
        props = _from_node(n.PROPOSALS)
        props['steps'] = tuple(props['steps'])
        out = dict(backbone=build_backbone(cfg), in_feature=n.IN_FEATURE,
                   num_classes=n.NUM_CLASSES, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
                   pixel_std=list(cfg.MODEL.PIXEL_STD), train_cfg=_from_node(n.TRAIN),
                   test_cfg=_from_node(n.TEST), proposals=props,
                   size_divisibility=n.SIZE_DIVISIBILITY)
        if 'FC_CHANNELS' in n:
            out['fc_channels'] = n.FC_CHANNELS
        return out

    def extract_feat(self, inputs):
        return self.backbone(inputs)[self.in_feature]

    @property
    def input_size_divisibility(self) -> int:
        return max(self.size_divisibility, self.backbone.size_divisibility, 1)

    def _iteration(self):
        return 0

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        if self.training:
            if any('instances' in x for x in batched_inputs):
                raise ValueError(f'{type(self).__name__} trains from image-level labels only: '
                                 'register the training set with register_image_labels')
            targets = torch.stack([torch.as_tensor(x[self.target_key])
                                   for x in batched_inputs]).to(self.device)
            if self.target_key == 'image_counts':
                return self.image_level_loss(images.tensor, targets, self._iteration())
            return self.image_level_loss(images.tensor, targets)
        return self.inference(images, batched_inputs)

    def inference(self, images, batched_inputs):
        # proposals see the de-normalised input, as the mmdet adapter's (same arithmetic)
        raw = images.tensor * self.pixel_std + self.pixel_mean
        found = self.predict_instances(
            images.tensor, images.image_sizes,
            lambda i: self.proposal_source(raw[i], batched_inputs[i], images.image_sizes[i]))
        out = []
        for (masks, labels, scores), x, size in zip(found, batched_inputs, images.image_sizes):
            h, w = x.get('height', size[0]), x.get('width', size[1])
            masks = rescale_masks(masks.bool(), (h, w))
            inst = Instances((h, w))
            inst.pred_masks = masks
            inst.pred_classes = labels.long()
            inst.scores = scores.float()
            inst.pred_boxes = Boxes(masks_to_boxes(masks).float() if len(masks) else
                                    masks.new_zeros((0, 4), dtype=torch.float32))
            out.append({'instances': inst})
        return out


@META_ARCH_REGISTRY.register()
class InsplugCountSeg(CountSegMaps, InsplugPRM):
    """CountSeg / ILC (Cholakkal et al., CVPR 2019), trained from ``image_counts``: stage 1 for
    ``TRAIN.STAGE1_ITERS`` iterations (detectron2's event-storage iteration), then stage 2."""
    num_classes_key = 'MODEL.INSPLUG.COUNTSEG.NUM_CLASSES'
    node = 'COUNTSEG'
    default_train_cfg = COUNTSEG_TRAIN_CFG
    default_test_cfg = COUNTSEG_TEST_CFG
    target_key = 'image_counts'

    def _iteration(self):
        try:
            from detectron2.utils.events import get_event_storage
            return int(get_event_storage().iter)
        except AssertionError:  # outside a trainer
            return 0
