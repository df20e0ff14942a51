"""SparseInst for detectron2: the ``InsplugSparseInst`` meta-architecture (META_ARCH_REGISTRY).

Shapes: B images; N instance slots; K classes; (Hp, Wp) the padded batch input; (h_i, w_i) the
un-padded input size of image i; (H_i, W_i) its output (original) size.

backbone (C3-C5, e.g. ResNet res3-res5) -> :class:`InstanceContextEncoder` -> :class:`IAMDecoder`;
training calls :func:`insplug.core.sparseinst.loss.prepare_loss_inputs` and
:func:`~insplug.core.sparseinst.loss.criterion_losses`, inference
:func:`insplug.core.sparseinst.inference.sparseinst_inference` (NMS-free). Results are
``Instances`` at the original image size with ``pred_masks`` (bool), ``pred_boxes`` (the masks'
tight boxes), ``scores`` and ``pred_classes``, ready for ``COCOEvaluator``.

The name carries an ``Insplug`` prefix because the official SparseInst project registers
``SparseInst`` in the same detectron2 registry; both can then be imported together.

yacs::

    MODEL.META_ARCHITECTURE: InsplugSparseInst
    MODEL.INSPLUG.SPARSEINST.*      # see insplug.detectron2.config
"""
from typing import Dict, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils import comm
from torch import nn

from insplug.core.sparseinst.decoder import IAMDecoder
from insplug.core.sparseinst.encoder import InstanceContextEncoder
from insplug.core.sparseinst.inference import sparseinst_inference
from insplug.core.sparseinst.loss import DEFAULT_WEIGHTS, criterion_losses, prepare_loss_inputs
from insplug.detectron2.inputs import NormalisedInputs

from .masks import instances_mask_tensor

# the decoder predicts masks at stride 4 from a stride-8 map built from C3-C5 (stride 32)
SIZE_DIVISIBILITY = 32


def average_num_instances(count: float, device) -> float:
    """Number of targets averaged over the distributed workers, at least 1 (loss normaliser)."""
    world = comm.get_world_size()
    if world > 1:
        total = torch.tensor([float(count)], device=device)
        torch.distributed.all_reduce(total)
        count = total.item() / world
    return max(float(count), 1.0)


@META_ARCH_REGISTRY.register()
class InsplugSparseInst(NormalisedInputs, nn.Module):
    """SparseInst (Cheng et al., CVPR 2022) as a detectron2 meta-architecture.

    Args:
        backbone: a detectron2 ``Backbone`` with the ``in_features`` outputs.
        encoder: :class:`InstanceContextEncoder` (its ``in_channels`` those of ``in_features``).
        decoder: :class:`IAMDecoder`.
        in_features: names of C3, C4, C5 (``['res3', 'res4', 'res5']``).
        pixel_mean, pixel_std: input normalisation (3 values each, in the input format).
        loss_weights: dict ``cls``, ``mask``, ``dice``, ``obj`` (2, 5, 2, 1).
        matcher_alpha, matcher_beta: matching exponents (0.8, 0.2).
        focal_alpha, focal_gamma: focal-loss parameters (0.25, 2).
        cls_threshold, mask_threshold, max_detections: inference (0.005, 0.45, 100).
    """

    @configurable
    def __init__(self, *, backbone: Backbone, encoder: InstanceContextEncoder,
                 decoder: IAMDecoder, in_features: Sequence[str], pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], loss_weights: Optional[Dict[str, float]] = None,
                 matcher_alpha: float = 0.8, matcher_beta: Optional[float] = None,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 cls_threshold: float = 0.005, mask_threshold: float = 0.45,
                 max_detections: int = 100):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f'SparseInst in_features {list(in_features)}: {missing} are not '
                             f'backbone outputs {sorted(shapes)}; set the backbone '
                             'OUT_FEATURES (e.g. MODEL.RESNETS.OUT_FEATURES: [res3, res4, res5])')
        channels = [shapes[f].channels for f in in_features]
        if list(encoder.in_channels) != channels:
            raise ValueError(f'encoder in_channels {list(encoder.in_channels)} differ from the '
                             f'backbone outputs {dict(zip(in_features, channels))}')
        if decoder.in_channels != encoder.out_channels:
            raise ValueError(f'decoder in_channels ({decoder.in_channels}) must equal the '
                             f'encoder out_channels ({encoder.out_channels})')
        unknown = set(loss_weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f'loss_weights: unknown keys {sorted(unknown)}; allowed '
                             f'{sorted(DEFAULT_WEIGHTS)}')
        self.backbone, self.encoder, self.decoder = backbone, encoder, decoder
        self.in_features = list(in_features)
        self.num_classes = decoder.num_classes
        self.loss_weights = dict(DEFAULT_WEIGHTS, **(loss_weights or {}))
        self.matcher_alpha = matcher_alpha
        self.matcher_beta = 1.0 - matcher_alpha if matcher_beta is None else matcher_beta
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.cls_threshold, self.mask_threshold = cls_threshold, mask_threshold
        self.max_detections = max_detections
        self.register_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.INSPLUG.SPARSEINST
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in s.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f'MODEL.INSPLUG.SPARSEINST.IN_FEATURES {list(s.IN_FEATURES)}: '
                             f'{missing} are not backbone outputs {sorted(shapes)}; set e.g. '
                             'MODEL.RESNETS.OUT_FEATURES: [res3, res4, res5]')
        encoder = InstanceContextEncoder(
            in_channels=[shapes[f].channels for f in s.IN_FEATURES],
            out_channels=s.ENCODER.NUM_CHANNELS, pool_sizes=list(s.ENCODER.POOL_SIZES))
        d = s.DECODER
        decoder = IAMDecoder(
            in_channels=s.ENCODER.NUM_CHANNELS, num_classes=d.NUM_CLASSES,
            num_masks=d.NUM_MASKS, iam_type=d.IAM_TYPE,
            groups=1 if d.IAM_TYPE == 'base' else d.GROUPS, inst_dim=d.INST.DIM,
            inst_convs=d.INST.CONVS, mask_dim=d.MASK.DIM, mask_convs=d.MASK.CONVS,
            kernel_dim=d.KERNEL_DIM, scale_factor=d.SCALE_FACTOR)
        return dict(
            backbone=backbone, encoder=encoder, decoder=decoder,
            in_features=list(s.IN_FEATURES), pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD),
            loss_weights=dict(cls=s.LOSS.CLASS_WEIGHT, mask=s.LOSS.MASK_PIXEL_WEIGHT,
                              dice=s.LOSS.MASK_DICE_WEIGHT, obj=s.LOSS.OBJECTNESS_WEIGHT),
            matcher_alpha=s.MATCHER.ALPHA, matcher_beta=s.MATCHER.BETA,
            focal_alpha=s.LOSS.FOCAL_ALPHA, focal_gamma=s.LOSS.FOCAL_GAMMA,
            cls_threshold=s.CLS_THRESHOLD, mask_threshold=s.MASK_THRESHOLD,
            max_detections=s.MAX_DETECTIONS)

    @property
    def input_size_divisibility(self) -> int:
        """Pad to a multiple of 32 at least (SparseInst's decoder halves 5 times)."""
        return max(SIZE_DIVISIBILITY, self.backbone.size_divisibility)

    def forward_outputs(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, Hp, Wp) normalised -> decoder outputs (``cls_logits`` (B, N, K),
        ``obj_logits`` (B, N, 1), ``mask_logits`` (B, N, Hp/4, Wp/4))."""
        features = self.backbone(images)
        return self.decoder(self.encoder([features[f] for f in self.in_features]))

    def losses(self, outputs, gt_instances, pad_shape):
        """Matching + the four weighted losses; ``gt_instances``: B ground-truth ``Instances``."""
        gt_masks = [instances_mask_tensor(g, self.device).float() for g in gt_instances]
        gt_labels = [g.gt_classes.to(self.device) for g in gt_instances]
        inputs = prepare_loss_inputs(outputs, gt_masks, gt_labels, pad_shape, self.num_classes,
                                     self.matcher_alpha, self.matcher_beta)
        inputs['num_instances'] = average_num_instances(sum(len(x) for x in gt_labels),
                                                        self.device)
        return criterion_losses(inputs, self.loss_weights, self.focal_alpha, self.focal_gamma)

    def inference(self, outputs, batched_inputs, images: ImageList):
        """Per-image ``Instances`` at the requested output size (``height``/``width``)."""
        out_shapes = [(x.get('height', size[0]), x.get('width', size[1]))
                      for x, size in zip(batched_inputs, images.image_sizes)]
        results = sparseinst_inference(outputs, tuple(images.tensor.shape[-2:]),
                                       images.image_sizes, out_shapes, self.cls_threshold,
                                       self.mask_threshold, self.max_detections)
        processed = []
        for result, shape in zip(results, out_shapes):
            inst = Instances(tuple(shape))
            inst.pred_masks = result['masks']
            inst.pred_boxes = Boxes(result['bboxes'])
            inst.scores = result['scores']
            inst.pred_classes = result['labels']
            processed.append({'instances': inst})
        return processed

    def forward(self, batched_inputs):
        """detectron2 interface: training returns a loss dict, inference a list of dicts with
        ``instances``."""
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_outputs(images.tensor)
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('SparseInst training needs "instances" in every input dict (use '
                               'a dataset mapper with is_train=True)')
            gt_instances = [x['instances'].to(self.device) for x in batched_inputs]
            return self.losses(outputs, gt_instances, tuple(images.tensor.shape[-2:]))
        return self.inference(outputs, batched_inputs, images)
