"""Bottom-up models for detectron2: ``InsplugSpatialEmbeddings`` and ``InsplugDiscriminative``
(META_ARCH_REGISTRY), and the branched ERFNet as ``build_insplug_erfnet_backbone``
(BACKBONE_REGISTRY).

Shapes: B images; (Hp, Wp) the padded batch input; (h_i, w_i) the un-padded input of image i;
(H_i, W_i) its output (original) size; K classes; M ground-truth instances of the batch.

backbone (ERFNet branches at stride 2, or an FPN level) -> the core's output layers
(:class:`insplug.core.bottomup.outputs.SpatialEmbeddingOutputs` /
:class:`~insplug.core.bottomup.outputs.DiscriminativeOutputs`) -> full-resolution maps (B, *, Hp,
Wp). Training: :func:`insplug.core.bottomup.spatial_embedding.spatial_embedding_loss` /
:func:`insplug.core.bottomup.discriminative.discriminative_head_losses`. Inference: the core's
clustering (:mod:`insplug.core.postprocess.clustering`) per image, then
:func:`insplug.core.bottomup.instances.select_instances`. Results are ``Instances`` at the
original image size with ``pred_masks`` (bool), ``pred_boxes`` (the masks' tight boxes),
``scores`` and ``pred_classes``, ready for ``COCOEvaluator``. The maths is the core's, shared with
the mmdet adapters (``BottomUpSegmentor`` with ``SpatialEmbeddingHead`` /
``DiscriminativeHead``); this module only converts detectron2 structures.

yacs::

    MODEL.META_ARCHITECTURE: InsplugSpatialEmbeddings      # or InsplugDiscriminative
    MODEL.BACKBONE.NAME: build_insplug_erfnet_backbone     # or any detectron2 backbone (FPN)
    MODEL.INSPLUG.ERFNET.*, MODEL.INSPLUG.SPATIALEMBEDDINGS.*, MODEL.INSPLUG.DISCRIMINATIVE.*

The official SpatialEmbeddings release is plain PyTorch (no detectron2 names); detectron2 itself
registers no ERFNet. The ``Insplug`` / ``build_insplug_`` prefixes keep the names clear of any
other project's.
"""
from typing import Dict, Optional, Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import (BACKBONE_REGISTRY, META_ARCH_REGISTRY, Backbone, ShapeSpec,
                                 build_backbone)
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from insplug.core.backbones.erfnet import ERFNet
from insplug.core.bottomup.discriminative import (discriminative_head_losses,
                                                  discriminative_inference)
from insplug.core.bottomup.instances import select_instances
from insplug.core.bottomup.outputs import DiscriminativeOutputs, SpatialEmbeddingOutputs
from insplug.core.bottomup.spatial_embedding import (OFFICIAL_SPACING,
                                                     spatial_embedding_inference,
                                                     spatial_embedding_loss)
from insplug.core.losses.discriminative import discriminative_loss
from insplug.core.postprocess.clustering import (GreedySeedClustering, KMeansClustering,
                                                 MeanShiftClustering)
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['ERFNetBackbone', 'build_insplug_erfnet_backbone', 'InsplugSpatialEmbeddings',
           'InsplugDiscriminative', 'build_clusterer', 'CLUSTERERS']

#: yacs sub-node name -> clustering class of the core
CLUSTERERS = {'GREEDY': GreedySeedClustering, 'MEAN_SHIFT': MeanShiftClustering,
              'KMEANS': KMeansClustering}
_CLUSTERER_NODE = {cls.__name__: node for node, cls in CLUSTERERS.items()}


# --------------------------------------------------------------------------- config
def _upper_node(defaults: dict) -> CN:
    node = CN()
    for key, value in defaults.items():
        node[key.upper()] = list(value) if isinstance(value, tuple) else value
    return node


def _clustering_node(name: str) -> CN:
    """``NAME`` (a core clustering class) + one sub-node of constructor defaults per class."""
    node = CN()
    node.NAME = name
    for sub, cls in CLUSTERERS.items():
        node[sub] = _upper_node(signature_defaults(cls))
    return node


@register_config_node('ERFNET')
def _erfnet_node():
    node = _upper_node({k: v for k, v in signature_defaults(ERFNet).items()
                        if k != 'in_channels'})
    return node


@register_config_node('SPATIALEMBEDDINGS')
def _spatialembeddings_node():
    outputs = signature_defaults(SpatialEmbeddingOutputs)
    loss = signature_defaults(spatial_embedding_loss)
    infer = signature_defaults(spatial_embedding_inference)
    node = CN()
    node.NUM_CLASSES = 1  # no core default: the official release trains one class (car)
    # backbone outputs feeding (offsets + sigma, seeds); ERFNet: its two decoder branches
    node.IN_FEATURES = ['branch0', 'branch1']
    node.N_SIGMA = outputs['n_sigma']
    node.SIGMA_INIT = outputs['sigma_init']
    node.SPACING = list(OFFICIAL_SPACING)  # (x, y) coordinate units per pixel
    node.TO_CENTER = loss['to_center']
    node.FOREGROUND_WEIGHT = loss['foreground_weight']
    node.INSTANCE_WEIGHT = loss['instance_weight']
    node.SIGMA_WEIGHT = loss['sigma_weight']
    node.SEED_WEIGHT = loss['seed_weight']
    node.FOREGROUND_THRESHOLD = infer['foreground_threshold']
    node.MAX_PER_IMG = signature_defaults(select_instances)['max_per_img']
    node.CLUSTERING = _clustering_node('GreedySeedClustering')
    return node


@register_config_node('DISCRIMINATIVE')
def _discriminative_node():
    outputs = signature_defaults(DiscriminativeOutputs)
    loss = signature_defaults(discriminative_loss)
    head = signature_defaults(discriminative_head_losses)
    node = CN()
    node.NUM_CLASSES = 1  # no core default: the authors' release segments one class (car)
    node.IN_FEATURES = ['branch0', 'branch1']
    node.EMBED_DIMS = outputs['embed_dims']
    node.PREDICT_COUNT = outputs['predict_count']
    node.LOSS = _upper_node(loss)  # DELTA_V, DELTA_D, ALPHA, ..., MIN_PIXELS
    node.SEMANTIC_WEIGHT = head['semantic_weight']
    node.SEMANTIC_CLASS_WEIGHT = []  # (K + 1) weights, background first; [] = unweighted
    node.COUNT_WEIGHT = head['count_weight']
    node.MIN_PIXELS = signature_defaults(discriminative_inference)['min_pixels']
    node.MAX_PER_IMG = signature_defaults(select_instances)['max_per_img']
    node.CLUSTERING = _clustering_node('MeanShiftClustering')
    # as the mmdet DiscriminativeHead: mean-shift bandwidth and assignment radius = delta_d
    node.CLUSTERING.MEAN_SHIFT.BANDWIDTH = loss['delta_d']
    node.CLUSTERING.MEAN_SHIFT.ASSIGN_RADIUS = loss['delta_d']
    return node


def build_clusterer(node):
    """A core clusterer from a ``CLUSTERING`` node (``NAME`` + that class's sub-node)."""
    if node.NAME not in _CLUSTERER_NODE:
        raise KeyError(f'CLUSTERING.NAME {node.NAME!r}: choose one of {sorted(_CLUSTERER_NODE)}')
    sub = _CLUSTERER_NODE[node.NAME]
    return CLUSTERERS[sub](**{k.lower(): v for k, v in node[sub].items()})


# --------------------------------------------------------------------------- backbone
class ERFNetBackbone(Backbone):
    """The branched ERFNet (:class:`insplug.core.backbones.erfnet.ERFNet`) as a detectron2
    ``Backbone``: outputs ``branch0``, ``branch1``, ... (B, C, H/2, W/2), size divisibility 8.

    Parameters are named as in the core module (``encoder.*``, ``decoders.{d}.*``), i.e. as the
    mmdet adapter's ``backbone.*``.
    """

    def __init__(self, in_channels: int = 3, **kwargs):
        super().__init__()
        net = ERFNet(in_channels=in_channels, **kwargs)
        self.encoder, self.decoders = net.encoder, net.decoders
        self._channels = net.out_channels
        self._out_features = [f'branch{i}' for i in range(len(self.decoders))]

    def forward(self, x):
        return dict(zip(self._out_features, ERFNet.forward(self, x)))

    @property
    def size_divisibility(self) -> int:
        return 8

    def output_shape(self):
        return {name: ShapeSpec(channels=self._channels, stride=2)
                for name in self._out_features}


@BACKBONE_REGISTRY.register()
def build_insplug_erfnet_backbone(cfg, input_shape: ShapeSpec):
    """``MODEL.INSPLUG.ERFNET`` -> :class:`ERFNetBackbone`."""
    kwargs = {k.lower(): (tuple(v) if isinstance(v, list) else v)
              for k, v in cfg.MODEL.INSPLUG.ERFNET.items()}
    return ERFNetBackbone(in_channels=input_shape.channels, **kwargs)


# --------------------------------------------------------------------------- meta-archs
def _feature_stride(shapes, in_features):
    strides = {shapes[f].stride for f in in_features}
    channels = {shapes[f].channels for f in in_features}
    if len(strides) != 1 or len(channels) != 1:
        raise ValueError(f'in_features {list(in_features)} must share one stride and width, got '
                         f'{ {f: (shapes[f].stride, shapes[f].channels) for f in in_features} }')
    return strides.pop(), channels.pop()


class _BottomUpBase(NormalisedInputs, nn.Module):
    """Shared wiring: normalisation and padding, ground truth as flat tensors, result packing."""

    def __init__(self, backbone: Backbone, in_features: Sequence[str], clusterer,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 max_per_img: int):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f'in_features {list(in_features)}: {missing} are not backbone '
                             f'outputs {sorted(shapes)}')
        if len(in_features) != 2:
            raise ValueError('in_features names the two maps feeding the two output layers '
                             f'(the same name twice for one FPN level), got {list(in_features)}')
        self.backbone = backbone
        self.in_features = list(in_features)
        self.clusterer = clusterer
        self.max_per_img = max_per_img
        self.register_pixel_stats(pixel_mean, pixel_std)

    def forward_outputs(self, images: torch.Tensor):
        """(B, 3, Hp, Wp) normalised -> the output layers' full-resolution maps."""
        feats = self.backbone(images)
        names = sorted(set(self.in_features), key=self.in_features.index)
        # the core output layers index a sequence of maps; in_index = positions in `names`
        return self.outputs([feats[n] for n in names])

    @staticmethod
    def batch_gt(batched_inputs, pad_shape, device):
        """Ground truth of the batch: masks (M, Hp, Wp) bool zero-padded, labels (M,), image
        index (M,)."""
        masks, labels, img = [], [], []
        for i, x in enumerate(batched_inputs):
            if 'instances' not in x:
                raise KeyError('training needs "instances" in every input dict (use a dataset '
                               'mapper with is_train=True)')
            inst = x['instances']
            m = instances_mask_tensor(inst, device)
            h, w = m.shape[-2:]
            masks.append(nn.functional.pad(m, (0, pad_shape[1] - w, 0, pad_shape[0] - h)))
            labels.append(inst.gt_classes.to(device).long())
            img.append(torch.full((m.shape[0],), i, dtype=torch.long, device=device))
        return torch.cat(masks), torch.cat(labels), torch.cat(img)

    def infer_one(self, outputs, index: int):
        raise NotImplementedError

    def inference(self, outputs, batched_inputs, images: ImageList):
        processed = []
        for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            out_hw = (x.get('height', size[0]), x.get('width', size[1]))
            masks, labels, scores = self.infer_one(outputs, i)
            masks, labels, scores, boxes = select_instances(masks, labels, scores, size,
                                                            out_hw, self.max_per_img)
            inst = Instances(tuple(out_hw))
            inst.pred_masks = masks
            inst.pred_boxes = Boxes(boxes)
            inst.scores = scores
            inst.pred_classes = labels
            processed.append({'instances': inst})
        return processed

    def losses(self, outputs, masks, labels, img) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_outputs(images.tensor)
        if self.training:
            gt = self.batch_gt(batched_inputs, tuple(images.tensor.shape[-2:]), self.device)
            return self.losses(outputs, *gt)
        return self.inference(outputs, batched_inputs, images)


def _in_index(in_features):
    names = sorted(set(in_features), key=list(in_features).index)
    return tuple(names.index(f) for f in in_features)


@META_ARCH_REGISTRY.register()
class InsplugSpatialEmbeddings(_BottomUpBase):
    """SpatialEmbeddings (Neven et al., CVPR 2019) as a detectron2 meta-architecture.

    Args:
        backbone: a detectron2 ``Backbone`` (ERFNet branches, or an FPN).
        in_features: the two maps feeding (offsets + sigma, seeds).
        num_classes: K (one seed map each).
        n_sigma, sigma_init: see :class:`SpatialEmbeddingOutputs`.
        spacing: (x, y) coordinate units per pixel.
        to_center, foreground_weight, instance_weight, sigma_weight, seed_weight: loss
            (:func:`spatial_embedding_loss`).
        clusterer: a core clusterer (default :class:`GreedySeedClustering`).
        foreground_threshold: pixels whose best seed exceeds this are clustered.
        pixel_mean, pixel_std: input normalisation.
        max_per_img: instances kept per image.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, in_features: Sequence[str], num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], n_sigma: int = 1,
                 sigma_init: float = 1.0, spacing=OFFICIAL_SPACING, to_center: bool = True,
                 foreground_weight: float = 10.0, instance_weight: float = 1.0,
                 sigma_weight: float = 10.0, seed_weight: float = 1.0, clusterer=None,
                 foreground_threshold: float = 0.5, max_per_img: int = 100):
        super().__init__(backbone, in_features,
                         GreedySeedClustering() if clusterer is None else clusterer,
                         pixel_mean, pixel_std, max_per_img)
        stride, channels = _feature_stride(backbone.output_shape(), in_features)
        self.outputs = SpatialEmbeddingOutputs(channels, num_classes, n_sigma, stride,
                                               _in_index(in_features), sigma_init)
        self.num_classes = num_classes
        self.spacing = spacing if isinstance(spacing, (int, float)) else tuple(spacing)
        self.loss_cfg = dict(to_center=to_center, foreground_weight=foreground_weight,
                             instance_weight=instance_weight, sigma_weight=sigma_weight,
                             seed_weight=seed_weight)
        self.foreground_threshold = foreground_threshold

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.INSPLUG.SPATIALEMBEDDINGS
        return dict(
            backbone=build_backbone(cfg), in_features=list(s.IN_FEATURES),
            num_classes=s.NUM_CLASSES, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD), n_sigma=s.N_SIGMA, sigma_init=s.SIGMA_INIT,
            spacing=tuple(s.SPACING), to_center=s.TO_CENTER,
            foreground_weight=s.FOREGROUND_WEIGHT, instance_weight=s.INSTANCE_WEIGHT,
            sigma_weight=s.SIGMA_WEIGHT, seed_weight=s.SEED_WEIGHT,
            clusterer=build_clusterer(s.CLUSTERING),
            foreground_threshold=s.FOREGROUND_THRESHOLD, max_per_img=s.MAX_PER_IMG)

    def losses(self, outputs, masks, labels, img):
        offsets, sigma, seeds = outputs
        return spatial_embedding_loss(offsets, sigma, seeds, masks, labels, img, self.spacing,
                                      **self.loss_cfg)

    def infer_one(self, outputs, index):
        offsets, sigma, seeds = outputs
        return spatial_embedding_inference(offsets[index], sigma[index], seeds[index],
                                           self.clusterer, self.spacing,
                                           self.foreground_threshold)


@META_ARCH_REGISTRY.register()
class InsplugDiscriminative(_BottomUpBase):
    """Discriminative-loss model (De Brabandere et al., 2017) as a detectron2 meta-architecture.

    Args:
        backbone, in_features: as :class:`InsplugSpatialEmbeddings` (embedding, semantic maps).
        num_classes: K (the semantic branch has K + 1 channels, 0 = background).
        embed_dims: D.  predict_count: instance-count density branch (needed by k-means).
        loss_cfg: keyword arguments of :func:`discriminative_loss` (defaults: the release's).
        semantic_weight, semantic_class_weight, count_weight: see
            :func:`discriminative_head_losses`.
        clusterer: a core clusterer (default mean-shift, bandwidth and radius ``delta_d``).
        min_pixels: smaller clusters are dropped.
        pixel_mean, pixel_std, max_per_img: as above.
        semantic_loss_fn: optional replacement of the semantic cross entropy
            (``semantic_loss_fn`` of :func:`discriminative_head_losses`, e.g. a Lovasz-softmax
            module in a LazyConfig); ``semantic_weight`` still applies.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, in_features: Sequence[str], num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], embed_dims: int = 8,
                 predict_count: bool = False, loss_cfg: Optional[dict] = None,
                 semantic_weight: float = 1.0,
                 semantic_class_weight: Optional[Sequence[float]] = None,
                 count_weight: float = 0.1, clusterer=None, min_pixels: int = 1,
                 max_per_img: int = 100, semantic_loss_fn=None):
        loss_cfg = dict(loss_cfg or {})
        delta_d = loss_cfg.get('delta_d', signature_defaults(discriminative_loss)['delta_d'])
        if clusterer is None:
            clusterer = MeanShiftClustering(bandwidth=delta_d, assign_radius=delta_d)
        super().__init__(backbone, in_features, clusterer, pixel_mean, pixel_std, max_per_img)
        if getattr(clusterer, 'needs_seed', False):
            raise ValueError('InsplugDiscriminative has no seed/sigma maps: use '
                             'MeanShiftClustering or KMeansClustering')
        if isinstance(clusterer, KMeansClustering) and not predict_count:
            raise ValueError('KMeansClustering needs predict_count=True (the instance count '
                             'comes from the count-density branch)')
        if semantic_class_weight is not None and len(semantic_class_weight) != num_classes + 1:
            raise ValueError(f'semantic_class_weight needs num_classes + 1 = {num_classes + 1} '
                             f'values (background first), got {len(semantic_class_weight)}')
        stride, channels = _feature_stride(backbone.output_shape(), in_features)
        self.outputs = DiscriminativeOutputs(channels, num_classes, embed_dims, predict_count,
                                             stride, _in_index(in_features))
        self.num_classes = num_classes
        self.loss_cfg = loss_cfg
        self.semantic_weight = semantic_weight
        self.semantic_class_weight = (None if semantic_class_weight is None
                                      else list(semantic_class_weight))
        self.count_weight = count_weight
        self.min_pixels = min_pixels
        self.semantic_loss_fn = semantic_loss_fn

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.INSPLUG.DISCRIMINATIVE
        return dict(
            backbone=build_backbone(cfg), in_features=list(d.IN_FEATURES),
            num_classes=d.NUM_CLASSES, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD), embed_dims=d.EMBED_DIMS,
            predict_count=d.PREDICT_COUNT,
            loss_cfg={k.lower(): v for k, v in d.LOSS.items()},
            semantic_weight=d.SEMANTIC_WEIGHT,
            semantic_class_weight=list(d.SEMANTIC_CLASS_WEIGHT) or None,
            count_weight=d.COUNT_WEIGHT, clusterer=build_clusterer(d.CLUSTERING),
            min_pixels=d.MIN_PIXELS, max_per_img=d.MAX_PER_IMG)

    def losses(self, outputs, masks, labels, img):
        emb, sem, density = outputs
        return discriminative_head_losses(emb, sem, density, masks, labels, img, self.loss_cfg,
                                          self.semantic_weight, self.semantic_class_weight,
                                          self.count_weight, self.semantic_loss_fn)

    def infer_one(self, outputs, index):
        emb, sem, density = outputs
        return discriminative_inference(emb[index], sem[index], self.clusterer,
                                        None if density is None else density[index],
                                        self.min_pixels)
