"""Embedding-grouping models for detectron2: ``InsplugRecurrentPixelEmbedding`` (Kong and
Fowlkes, CVPR 2018) and ``InsplugMetricSeediness`` (Fathi et al., 2017), META_ARCH_REGISTRY.

Shapes: as :mod:`insplug.detectron2.bottomup` (B images, padded input (Hp, Wp), K classes, M
ground-truth instances, D embedding dims, L mask-growth thresholds).

backbone (ERFNet branches, or an FPN level) -> the core's output layers
(:class:`insplug.core.bottomup.outputs.DiscriminativeOutputs` without count branch /
:class:`insplug.core.embedding_grouping.metric_seediness.SeedinessOutputs`) -> full-resolution
maps. Training: :func:`insplug.core.embedding_grouping.recurrent_meanshift.recurrent_embedding_head_losses`
/ :func:`insplug.core.embedding_grouping.metric_seediness.metric_seediness_loss`. Inference:
:func:`insplug.core.bottomup.discriminative.discriminative_inference` with the
:class:`~insplug.core.embedding_grouping.recurrent_meanshift.RecurrentMeanShiftClustering`
clusterer / :func:`insplug.core.embedding_grouping.metric_seediness.metric_seediness_inference`,
then the bottom-up base's ``select_instances``. The mmdet twins are
``RecurrentPixelEmbeddingSegmentor`` / ``MetricSeedinessSegmentor``; this module only wires.

yacs::

    MODEL.META_ARCHITECTURE: InsplugRecurrentPixelEmbedding   # or InsplugMetricSeediness
    MODEL.INSPLUG.RECURRENT_EMBEDDING.*, MODEL.INSPLUG.METRIC_SEEDINESS.*

Neither release is detectron2 code (MatConvNet; no code for Fathi et al.): the ``Insplug``
prefix keeps the names clear of any other project's.
"""
from typing import Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone

from insplug.core.bottomup.discriminative import discriminative_inference
from insplug.core.bottomup.instances import select_instances
from insplug.core.bottomup.outputs import DiscriminativeOutputs
from insplug.core.embedding_grouping.metric_seediness import (SeedinessOutputs,
                                                              metric_seediness_inference,
                                                              metric_seediness_loss,
                                                              select_seeds)
from insplug.core.embedding_grouping.recurrent_meanshift import (
    RecurrentMeanShiftClustering, recurrent_embedding_head_losses, recurrent_embedding_loss)

from .bottomup import _BottomUpBase, _feature_stride, _in_index, _upper_node
from .config import register_config_node, signature_defaults

__all__ = ['InsplugRecurrentPixelEmbedding', 'InsplugMetricSeediness']


@register_config_node('RECURRENT_EMBEDDING')
def _recurrent_embedding_node():
    node = CN()
    node.NUM_CLASSES = 1
    node.IN_FEATURES = ['branch0', 'branch1']
    node.EMBED_DIMS = 64  # release (VOC)
    node.LOSS = _upper_node({k: v for k, v in signature_defaults(
        recurrent_embedding_loss).items()})  # NUM_ITERS, BANDWIDTH, MARGIN, ...
    node.SEMANTIC_WEIGHT = signature_defaults(recurrent_embedding_head_losses)['semantic_weight']
    node.MIN_PIXELS = signature_defaults(discriminative_inference)['min_pixels']
    node.MAX_PER_IMG = signature_defaults(select_instances)['max_per_img']
    node.CLUSTERING = _upper_node(signature_defaults(RecurrentMeanShiftClustering))
    return node


@register_config_node('METRIC_SEEDINESS')
def _metric_seediness_node():
    loss = signature_defaults(metric_seediness_loss)
    infer = signature_defaults(metric_seediness_inference)
    node = CN()
    node.NUM_CLASSES = 1
    node.IN_FEATURES = ['branch0', 'branch1']
    node.EMBED_DIMS = signature_defaults(SeedinessOutputs)['embed_dims']
    node.THRESHOLDS = list(loss['thresholds'])
    node.POINTS_PER_INSTANCE = loss['points_per_instance']
    node.IOU_THRESHOLD = loss['iou_threshold']
    node.EMBED_WEIGHT = loss['embed_weight']
    node.SEEDINESS_WEIGHT = loss['seediness_weight']
    node.LOSS_STRIDE = loss['loss_stride']
    node.MAX_SEEDS = infer['max_seeds']
    node.ALPHA = signature_defaults(select_seeds)['alpha']
    node.MIN_SEEDINESS = infer['min_seediness']
    node.MIN_PIXELS = infer['min_pixels']
    node.MAX_PER_IMG = signature_defaults(select_instances)['max_per_img']
    return node


@META_ARCH_REGISTRY.register()
class InsplugRecurrentPixelEmbedding(_BottomUpBase):
    """Recurrent pixel embedding (Kong and Fowlkes, CVPR 2018) as a detectron2 meta-arch.

    Args:
        backbone, in_features: as :class:`insplug.detectron2.bottomup.InsplugDiscriminative`.
        num_classes: K (semantic branch K + 1 channels, 0 = background).
        embed_dims: D.
        loss_cfg: keyword arguments of :func:`recurrent_embedding_loss` (defaults: the
            release's tutorial with grouping loops).
        semantic_weight: weight of the semantic cross entropy.
        clusterer: default :class:`RecurrentMeanShiftClustering` (16 loops at 0.2).
        min_pixels, pixel_mean, pixel_std, max_per_img: as the discriminative model.
    """
    num_classes_key = 'MODEL.INSPLUG.RECURRENT_EMBEDDING.NUM_CLASSES'

    @configurable
    def __init__(self, *, backbone: Backbone, in_features: Sequence[str], num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], embed_dims: int = 64,
                 loss_cfg: Optional[dict] = None, semantic_weight: float = 1.0, clusterer=None,
                 min_pixels: int = 1, max_per_img: int = 100):
        super().__init__(backbone, in_features,
                         RecurrentMeanShiftClustering() if clusterer is None else clusterer,
                         pixel_mean, pixel_std, max_per_img)
        stride, channels = _feature_stride(backbone.output_shape(), in_features)
        self.outputs = DiscriminativeOutputs(channels, num_classes, embed_dims, False, stride,
                                             _in_index(in_features))
        self.num_classes = num_classes
        self.loss_cfg = dict(loss_cfg or {})
        self.semantic_weight = semantic_weight
        self.min_pixels = min_pixels

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.INSPLUG.RECURRENT_EMBEDDING
        return dict(
            backbone=build_backbone(cfg), in_features=list(r.IN_FEATURES),
            num_classes=r.NUM_CLASSES, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD), embed_dims=r.EMBED_DIMS,
            loss_cfg={k.lower(): v for k, v in r.LOSS.items()},
            semantic_weight=r.SEMANTIC_WEIGHT,
            clusterer=RecurrentMeanShiftClustering(
                **{k.lower(): v for k, v in r.CLUSTERING.items()}),
            min_pixels=r.MIN_PIXELS, max_per_img=r.MAX_PER_IMG)

    def forward_outputs(self, images):
        emb, sem, _ = super().forward_outputs(images)
        return emb, sem

    def losses(self, outputs, masks, labels, img):
        emb, sem = outputs
        return recurrent_embedding_head_losses(emb, sem, masks, labels, img, self.loss_cfg,
                                               self.semantic_weight)

    def infer_one(self, outputs, index):
        emb, sem = outputs
        return discriminative_inference(emb[index], sem[index], self.clusterer, None,
                                        self.min_pixels)


@META_ARCH_REGISTRY.register()
class InsplugMetricSeediness(_BottomUpBase):
    """Deep metric learning with seediness (Fathi et al., 2017) as a detectron2 meta-arch.

    Args:
        backbone, in_features: the maps feeding (embedding, seediness).
        num_classes: K.  embed_dims: D (paper 64).
        thresholds, points_per_instance, iou_threshold, embed_weight, seediness_weight,
            loss_stride: :func:`metric_seediness_loss`.
        max_seeds, alpha, min_seediness, min_pixels: :func:`metric_seediness_inference`.
        pixel_mean, pixel_std, max_per_img: as above.
    """
    num_classes_key = 'MODEL.INSPLUG.METRIC_SEEDINESS.NUM_CLASSES'

    @configurable
    def __init__(self, *, backbone: Backbone, in_features: Sequence[str], num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], embed_dims: int = 64,
                 thresholds: Sequence[float] = (0.25, 0.5, 0.75), points_per_instance: int = 10,
                 iou_threshold: float = 0.5, embed_weight: float = 1.0,
                 seediness_weight: float = 0.2, loss_stride: int = 1, max_seeds: int = 100,
                 alpha: float = 0.3, min_seediness: float = 0.0, min_pixels: int = 1,
                 max_per_img: int = 100):
        super().__init__(backbone, in_features, None, pixel_mean, pixel_std, max_per_img)
        stride, channels = _feature_stride(backbone.output_shape(), in_features)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.outputs = SeedinessOutputs(channels, num_classes, embed_dims, len(self.thresholds),
                                        stride, _in_index(in_features))
        self.num_classes = num_classes
        self.loss_cfg = dict(thresholds=self.thresholds,
                             points_per_instance=points_per_instance,
                             iou_threshold=iou_threshold, embed_weight=embed_weight,
                             seediness_weight=seediness_weight, loss_stride=loss_stride)
        self.infer_cfg = dict(max_seeds=max_seeds, alpha=alpha, min_seediness=min_seediness,
                              min_pixels=min_pixels)

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.INSPLUG.METRIC_SEEDINESS
        return dict(
            backbone=build_backbone(cfg), in_features=list(m.IN_FEATURES),
            num_classes=m.NUM_CLASSES, pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD), embed_dims=m.EMBED_DIMS,
            thresholds=tuple(m.THRESHOLDS), points_per_instance=m.POINTS_PER_INSTANCE,
            iou_threshold=m.IOU_THRESHOLD, embed_weight=m.EMBED_WEIGHT,
            seediness_weight=m.SEEDINESS_WEIGHT, loss_stride=m.LOSS_STRIDE,
            max_seeds=m.MAX_SEEDS, alpha=m.ALPHA, min_seediness=m.MIN_SEEDINESS,
            min_pixels=m.MIN_PIXELS, max_per_img=m.MAX_PER_IMG)

    def losses(self, outputs, masks, labels, img):
        emb, seed = outputs
        return metric_seediness_loss(emb, seed, masks, labels, img, **self.loss_cfg)

    def infer_one(self, outputs, index):
        emb, seed = outputs
        return metric_seediness_inference(emb[index], seed[index], self.thresholds,
                                          **self.infer_cfg)
