"""mmdet heads of the bottom-up family: wiring of :mod:`insplug.core.bottomup` into mmdet.

Each head maps the backbone/neck features to full-resolution maps (``forward``), computes its
loss from ``DetDataSample.gt_instances`` (``loss``) and turns clusters into ``InstanceData``
with masks, labels, scores and boxes from masks (``predict``).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.bottomup.discriminative import (discriminative_head_losses,
                                                  discriminative_inference)
from insplug.core.bottomup.instances import select_instances
from insplug.core.bottomup.outputs import DiscriminativeOutputs, SpatialEmbeddingOutputs
from insplug.core.bottomup.spatial_embedding import (OFFICIAL_SPACING,
                                                     spatial_embedding_inference,
                                                     spatial_embedding_loss)
from insplug.registry import MODELS, TASK_UTILS


def batch_gt(data_samples, size: Tuple[int, int], device):
    """Ground truth of a batch as flat tensors.

    Returns:
        masks: (M, H, W) bool, zero-padded to ``size``.
        labels: (M,) long.
        img: (M,) long image index of each instance.
    """
    masks, labels, img = [], [], []
    for i, sample in enumerate(data_samples):
        gt = sample.gt_instances
        if 'masks' not in gt:
            raise ValueError('bottom-up heads need instance masks: add '
                             "dict(type='LoadAnnotations', with_bbox=True, with_mask=True) to "
                             'the train pipeline')
        m = gt.masks.to_tensor(dtype=torch.bool, device=device) if len(gt) else torch.zeros(
            0, *size, dtype=torch.bool, device=device)
        h, w = m.shape[-2:]
        if h > size[0] or w > size[1]:
            raise ValueError(f'gt masks {h}x{w} are larger than the batch input {size}')
        masks.append(F.pad(m, (0, size[1] - w, 0, size[0] - h)))
        labels.append(gt.labels.to(device))
        img.append(torch.full((m.shape[0],), i, dtype=torch.long, device=device))
    return torch.cat(masks), torch.cat(labels).long(), torch.cat(img)


def instances_from_clusters(masks: Tensor, labels: Tensor, scores: Tensor, img_meta: dict,
                            rescale: bool, max_per_img: int) -> InstanceData:
    """Clusters (N, H_pad, W_pad) -> ``InstanceData`` (core :func:`select_instances`: crop to the
    image, ``max_per_img`` best, optional resize to the original size, boxes from the masks)."""
    masks, labels, scores, boxes = select_instances(
        masks, labels, scores, img_meta['img_shape'][:2],
        img_meta['ori_shape'][:2] if rescale else None, max_per_img)
    results = InstanceData()
    results.masks = masks
    results.labels = labels
    results.scores = scores
    results.bboxes = boxes
    return results


class BottomUpHead(BaseModule):
    """Shared mmdet plumbing: ground truth gathering and result packing."""

    def __init__(self, num_classes: int, test_cfg: dict = None, default_clustering: dict = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        if num_classes < 1:
            raise ValueError(f'{type(self).__name__}: num_classes must be >= 1, got '
                             f'{num_classes}')
        self.num_classes = num_classes
        test_cfg = dict(test_cfg or {})
        self.max_per_img = test_cfg.pop('max_per_img', 100)
        self.clusterer = TASK_UTILS.build(test_cfg.pop('clustering', default_clustering))
        self.test_cfg = test_cfg

    def loss_from_outputs(self, outputs, masks, labels, img) -> dict:
        raise NotImplementedError

    def infer_one(self, outputs, index: int):
        raise NotImplementedError

    def loss(self, feats: Sequence[Tensor], data_samples) -> dict:
        outputs = self(feats)
        masks, labels, img = batch_gt(data_samples, outputs[0].shape[-2:], outputs[0].device)
        return self.loss_from_outputs(outputs, masks, labels, img)

    def predict(self, feats: Sequence[Tensor], data_samples,
                rescale: bool = True) -> List[InstanceData]:
        outputs = self(feats)
        results = []
        for i, sample in enumerate(data_samples):
            masks, labels, scores = self.infer_one(outputs, i)
            results.append(instances_from_clusters(masks, labels, scores, sample.metainfo,
                                                   rescale, self.max_per_img))
        return results


@MODELS.register_module()
class SpatialEmbeddingHead(BottomUpHead):
    """SpatialEmbeddings head: offsets + sigma + per-class seed maps, greedy seed clustering.

    Args:
        num_classes: number of classes (one seed map each).
        in_channels: feature channels (16 for ERFNet branches).
        n_sigma: 1 (isotropic bandwidth) or 2 (per axis).
        in_stride: stride of the features (2: ERFNet; 4: FPN P2).
        in_index: which feature map feeds the (offset+sigma, seed) outputs.
        spacing: coordinate units per pixel, one number or ``(x, y)`` (official
            ``(2/2047, 1/1023)``: ``linspace(0, 2, 2048)`` x ``linspace(0, 1, 1024)``).
        sigma_init: initial sigma (official 1.0).
        foreground_weight: seed-loss weight of instance pixels (official 10).
        loss_weights: weights of ``instance`` (Lovasz hinge), ``sigma`` (smoothness), ``seed``.
        test_cfg: ``clustering`` (a TASK_UTILS config, default GreedySeedClustering),
            ``foreground_threshold`` (0.5), ``max_per_img`` (100). The official test uses
            a seed threshold of 0.9 (GreedySeedClustering's default).

    Key layout: ``outputs.embedding.conv`` is the official ``decoders.0.output_conv`` (2 offsets
    + sigma), ``outputs.seed.conv`` the official ``decoders.1.output_conv`` (see the
    ``spatialembeddings`` converter).
    """
    def __init__(self, num_classes: int, in_channels: int = 16, n_sigma: int = 1,
                 in_stride: int = 2, in_index: Tuple[int, int] = (0, 1),
                 spacing=OFFICIAL_SPACING, sigma_init: float = 1.0,
                 foreground_weight: float = 10.0, loss_weights: dict = None,
                 test_cfg: dict = None, init_cfg=None):
        super().__init__(num_classes, test_cfg, dict(type='GreedySeedClustering'), init_cfg)
        self.outputs = SpatialEmbeddingOutputs(in_channels, num_classes, n_sigma, in_stride,
                                               in_index, sigma_init)
        self.spacing = spacing if isinstance(spacing, (int, float)) else tuple(spacing)
        self.foreground_weight = foreground_weight
        self.loss_weights = dict(dict(instance=1.0, sigma=10.0, seed=1.0), **(loss_weights or {}))
        self.foreground_threshold = self.test_cfg.pop('foreground_threshold', 0.5)

    def forward(self, feats: Sequence[Tensor]):
        return self.outputs(feats)

    def loss_from_outputs(self, outputs, masks, labels, img) -> dict:
        offsets, sigma, seeds = outputs
        w = self.loss_weights
        return spatial_embedding_loss(offsets, sigma, seeds, masks, labels, img, self.spacing,
                                      foreground_weight=self.foreground_weight,
                                      instance_weight=w['instance'], sigma_weight=w['sigma'],
                                      seed_weight=w['seed'])

    def infer_one(self, outputs, index: int):
        offsets, sigma, seeds = outputs
        return spatial_embedding_inference(offsets[index], sigma[index], seeds[index],
                                           self.clusterer, self.spacing,
                                           self.foreground_threshold)


@MODELS.register_module()
class DiscriminativeHead(BottomUpHead):
    """Discriminative-loss head: embeddings + semantic branch (+ count density), clustering.

    Args:
        num_classes: number of classes (semantic branch: num_classes + 1 with background).
        in_channels: feature channels.
        embed_dims: embedding dimensions (8).
        delta_v, delta_d, alpha, beta, gamma: discriminative loss settings (0.5, 1.5, 1, 1;
            gamma 0 as in the authors' release, which has no regulariser; paper 0.001).
        variance_norm, distance_norm, norm_eps, min_instance_pixels: normalisation of the loss
            (:func:`~insplug.core.losses.discriminative.discriminative_loss`; defaults: the
            authors' release, davyneven/fastSceneUnderstanding; the paper's form is
            ``'instance'``, ``'paper'``, 0, 1).
        semantic_weight: weight of the semantic cross entropy.
        semantic_class_weight: optional (num_classes + 1) cross-entropy class weights
            (background first; the release weights its classes, ENet-style).
        predict_count: add the instance-count density (needed by KMeansClustering).
        count_weight: weight of the count-density loss.
        loss_semantic: optional MODELS config of a loss ``(logits (B, K + 1, H, W), targets
            (B, H, W)) -> scalar`` replacing the semantic cross entropy (e.g.
            ``dict(type='LovaszSoftmaxLoss')``); ``semantic_weight`` still applies.
        in_stride, in_index: see :class:`SpatialEmbeddingHead`.
        test_cfg: ``clustering`` (default MeanShiftClustering with bandwidth and assignment
            radius ``delta_d`` = 1.5, the bandwidth of the release's test.lua),
            ``min_pixels`` (1), ``max_per_img`` (100).
    """

    def __init__(self, num_classes: int, in_channels: int = 16, embed_dims: int = 8,
                 delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0,
                 beta: float = 1.0, gamma: float = 0.0, variance_norm: str = 'sum',
                 distance_norm: str = 'release', norm_eps: float = 1e-8,
                 min_instance_pixels: int = 2, semantic_weight: float = 1.0,
                 semantic_class_weight=None, predict_count: bool = False, count_weight: float = 0.1, in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1), test_cfg: dict = None, init_cfg=None,
                 loss_semantic: dict = None):
        super().__init__(num_classes, test_cfg,
                         dict(type='MeanShiftClustering', bandwidth=delta_d,
                              assign_radius=delta_d), init_cfg)
        self.outputs = DiscriminativeOutputs(in_channels, num_classes, embed_dims, predict_count,
                                             in_stride, in_index)
        self.loss_cfg = dict(delta_v=delta_v, delta_d=delta_d, alpha=alpha, beta=beta,
                             gamma=gamma, variance_norm=variance_norm,
                             distance_norm=distance_norm, norm_eps=norm_eps,
                             min_pixels=min_instance_pixels)
        self.semantic_weight = semantic_weight
        self.semantic_class_weight = (None if semantic_class_weight is None
                                      else list(semantic_class_weight))
        if (self.semantic_class_weight is not None
                and len(self.semantic_class_weight) != num_classes + 1):
            raise ValueError(f'DiscriminativeHead: semantic_class_weight needs num_classes + 1 '
                             f'= {num_classes + 1} values (background first), got '
                             f'{len(self.semantic_class_weight)}')
        self.count_weight = count_weight
        self.loss_semantic = None if loss_semantic is None else MODELS.build(loss_semantic)
        self.min_pixels = self.test_cfg.pop('min_pixels', 1)
        if getattr(self.clusterer, 'needs_seed', False):
            raise ValueError('DiscriminativeHead has no seed/sigma maps: use MeanShiftClustering '
                             'or KMeansClustering in test_cfg.clustering')
        if type(self.clusterer).__name__ == 'KMeansClustering' and not predict_count:
            raise ValueError('DiscriminativeHead: KMeansClustering needs predict_count=True '
                             '(the instance count comes from the count-density branch)')

    def forward(self, feats: Sequence[Tensor]):
        return self.outputs(feats)

    def loss_from_outputs(self, outputs, masks, labels, img) -> dict:
        emb, sem, density = outputs
        return discriminative_head_losses(emb, sem, density, masks, labels, img, self.loss_cfg,
                                          self.semantic_weight, self.semantic_class_weight,
                                          self.count_weight, self.loss_semantic)

    def infer_one(self, outputs, index: int):
        emb, sem, density = outputs
        return discriminative_inference(emb[index], sem[index], self.clusterer,
                                        None if density is None else density[index],
                                        self.min_pixels)
