"""mmdet heads and detectors of the embedding-grouping family.

* :class:`RecurrentPixelEmbeddingHead` + :class:`RecurrentPixelEmbeddingSegmentor` -- Kong and
  Fowlkes (CVPR 2018): hypersphere embeddings, calibrated cosine losses on the embedding and
  after each recurrent mean-shift loop, semantic branch for the classes, grouping by
  :class:`~insplug.core.embedding_grouping.recurrent_meanshift.RecurrentMeanShiftClustering`.
* :class:`MetricSeedinessHead` + :class:`MetricSeedinessSegmentor` -- Fathi et al. (2017):
  embeddings with the pairwise logistic loss, per-class seediness for L thresholds, seeds by
  seediness times diversity, masks grown from the seeds.

The maths is in :mod:`insplug.core.embedding_grouping`; the mmdet plumbing (ground truth,
result packing) is :class:`insplug.mmdet.bottomup.heads.BottomUpHead`.
"""
from typing import Sequence, Tuple

from mmengine.model import BaseModule

from insplug.core.bottomup.discriminative import discriminative_inference
from insplug.core.bottomup.outputs import DiscriminativeOutputs
from insplug.core.embedding_grouping.metric_seediness import (PAPER_THRESHOLDS,
                                                              SeedinessOutputs,
                                                              metric_seediness_inference,
                                                              metric_seediness_loss)
from insplug.core.embedding_grouping.recurrent_meanshift import (
    RecurrentMeanShiftClustering, recurrent_embedding_head_losses)
from insplug.mmdet.bottomup.detector import BottomUpSegmentor
from insplug.mmdet.bottomup.heads import BottomUpHead
from insplug.registry import MODELS, TASK_UTILS

TASK_UTILS.register_module(name='RecurrentMeanShiftClustering',
                           module=RecurrentMeanShiftClustering)


@MODELS.register_module()
class RecurrentPixelEmbeddingHead(BottomUpHead):
    """Recurrent pixel embedding head: embeddings + semantic branch, recurrent mean-shift.

    Args:
        num_classes: K (semantic branch K + 1 channels, 0 = background).
        in_channels: feature channels.
        embed_dims: D (release 64 on VOC, 3 in the tutorial).
        num_iters, bandwidth, margin, loop_margin, sample_ratio, max_samples, pull_weight,
            push_weight, loss_stride: the losses
            (:func:`~insplug.core.embedding_grouping.recurrent_meanshift.recurrent_embedding_loss`;
            defaults: the release's tutorial with grouping loops).
        semantic_weight: weight of the semantic cross entropy.
        in_stride, in_index: see :class:`insplug.mmdet.bottomup.heads.SpatialEmbeddingHead`.
        test_cfg: ``clustering`` (default RecurrentMeanShiftClustering: 16 loops at bandwidth
            0.2, the release's VOC test script), ``min_pixels`` (1), ``max_per_img`` (100).
    """

    def __init__(self, num_classes: int, in_channels: int = 16, embed_dims: int = 64,
                 num_iters: int = 5, bandwidth: float = 0.1, margin: float = 0.1,
                 loop_margin: float = 0.07, sample_ratio: float = 0.2, max_samples: int = 4000,
                 pull_weight: float = 1.0, push_weight: float = 1.0, loss_stride: int = 1,
                 semantic_weight: float = 1.0, in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1), test_cfg: dict = None, init_cfg=None):
        super().__init__(num_classes, test_cfg, dict(type='RecurrentMeanShiftClustering'),
                         init_cfg)
        self.outputs = DiscriminativeOutputs(in_channels, num_classes, embed_dims, False,
                                             in_stride, in_index)
        self.loss_cfg = dict(num_iters=num_iters, bandwidth=bandwidth, margin=margin,
                             loop_margin=loop_margin, sample_ratio=sample_ratio,
                             max_samples=max_samples, pull_weight=pull_weight,
                             push_weight=push_weight, loss_stride=loss_stride)
        self.semantic_weight = semantic_weight
        self.min_pixels = self.test_cfg.pop('min_pixels', 1)
        if getattr(self.clusterer, 'needs_seed', False):
            raise ValueError('RecurrentPixelEmbeddingHead has no seed/sigma maps: use '
                             'RecurrentMeanShiftClustering or MeanShiftClustering')

    def forward(self, feats: Sequence):
        emb, sem, _ = self.outputs(feats)
        return emb, sem

    def loss_from_outputs(self, outputs, masks, labels, img) -> dict:
        emb, sem = outputs
        return recurrent_embedding_head_losses(emb, sem, masks, labels, img, self.loss_cfg,
                                               self.semantic_weight)

    def infer_one(self, outputs, index: int):
        emb, sem = outputs
        return discriminative_inference(emb[index], sem[index], self.clusterer, None,
                                        self.min_pixels)


@MODELS.register_module()
class MetricSeedinessHead(BottomUpHead):
    """Deep-metric-learning head with seediness (Fathi et al., 2017).

    Args:
        num_classes: K.
        in_channels: feature channels.
        embed_dims: D (paper 64).
        thresholds: mask-growth thresholds (paper 0.25, 0.5, 0.75).
        points_per_instance: sampled pixels per group (paper 10).
        iou_threshold: seediness target IoU (paper 0.5).
        embed_weight, seediness_weight: loss weights (paper 1 and lambda = 0.2).
        loss_stride: losses on every ``loss_stride``-th pixel.
        in_stride, in_index: see :class:`insplug.mmdet.bottomup.heads.SpatialEmbeddingHead`.
        test_cfg: ``max_seeds`` (100), ``alpha`` (0.3), ``min_seediness`` (0.0),
            ``min_pixels`` (1), ``max_per_img`` (100).
    """

    def __init__(self, num_classes: int, in_channels: int = 16, embed_dims: int = 64,
                 thresholds: Sequence[float] = PAPER_THRESHOLDS, points_per_instance: int = 10,
                 iou_threshold: float = 0.5, embed_weight: float = 1.0,
                 seediness_weight: float = 0.2, loss_stride: int = 1, in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1), test_cfg: dict = None, init_cfg=None):
        if num_classes < 1:
            raise ValueError(f'MetricSeedinessHead: num_classes must be >= 1, got {num_classes}')
        BaseModule.__init__(self, init_cfg)  # no clusterer: seeds and growth replace it
        test_cfg = dict(test_cfg or {})
        self.num_classes = num_classes
        self.max_per_img = test_cfg.pop('max_per_img', 100)
        self.clusterer = None
        self.infer_cfg = dict(dict(max_seeds=100, alpha=0.3, min_seediness=0.0, min_pixels=1),
                              **test_cfg)
        self.test_cfg = {}
        self.thresholds = tuple(float(t) for t in thresholds)
        self.outputs = SeedinessOutputs(in_channels, num_classes, embed_dims,
                                        len(self.thresholds), in_stride, in_index)
        self.loss_cfg = dict(thresholds=self.thresholds,
                             points_per_instance=points_per_instance,
                             iou_threshold=iou_threshold, embed_weight=embed_weight,
                             seediness_weight=seediness_weight, loss_stride=loss_stride)

    def forward(self, feats: Sequence):
        return self.outputs(feats)

    def loss_from_outputs(self, outputs, masks, labels, img) -> dict:
        emb, seed = outputs
        return metric_seediness_loss(emb, seed, masks, labels, img, **self.loss_cfg)

    def infer_one(self, outputs, index: int):
        emb, seed = outputs
        return metric_seediness_inference(emb[index], seed[index], self.thresholds,
                                          **self.infer_cfg)


@MODELS.register_module()
class RecurrentPixelEmbeddingSegmentor(BottomUpSegmentor):
    """Recurrent Pixel Embedding (Kong and Fowlkes, CVPR 2018): backbone (+ neck) +
    :class:`RecurrentPixelEmbeddingHead` (the head's type is set when omitted)."""

    def __init__(self, backbone: dict, head: dict, **kwargs):
        super().__init__(backbone, dict(dict(type='RecurrentPixelEmbeddingHead'), **head),
                         **kwargs)


@MODELS.register_module()
class MetricSeedinessSegmentor(BottomUpSegmentor):
    """Semantic instance segmentation via deep metric learning (Fathi et al., 2017): backbone
    (+ neck) + :class:`MetricSeedinessHead` (the head's type is set when omitted)."""

    def __init__(self, backbone: dict, head: dict, **kwargs):
        super().__init__(backbone, dict(dict(type='MetricSeedinessHead'), **head), **kwargs)
