"""DeepMask / SharpMask for detectron2: the ``DeepMask`` meta-architecture (class-agnostic mask
proposals) and the ``DeepMaskProposalGenerator`` (PROPOSAL_GENERATOR_REGISTRY: proposals =
boxes of the DeepMask masks, for a ``GeneralizedRCNN`` with stock ROI heads).

Shapes: B images, (Hp, Wp) the padded batch, (h_i, w_i) image i's valid input size, (H_i, W_i)
its output size, K proposals.

Both wrap :class:`insplug.core.deepmask.DeepMaskNet` (its own ResNet trunk; parameter names
``net.*`` as in the mmdet adapters, so mmdet weights load unchanged): training samples the
release's windows from the batch images and returns ``loss_mask`` + ``loss_score`` (stage
'deepmask') or ``loss_refine`` (stage 'sharpmask'); inference is the release's dense
multi-scale pass.

yacs::

    MODEL.META_ARCHITECTURE: DeepMask       (or MODEL.PROPOSAL_GENERATOR.NAME:
                                             DeepMaskProposalGenerator)
    MODEL.INSPLUG.DEEPMASK.*   # DEPTH, BASE_CHANNELS, NORM, PADDING, WINDOW_SIZE, CONTEXT,
                               # MASK_SIZE, LABEL_SIZE, ..., SHARPMASK (bool), KM, KS,
                               # STAGE, MASK_PER_IMAGE, ..., SMIN, SMAX, SSTEP, NUM_PROPOSALS
"""

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from insplug.core.deepmask import DeepMaskNet, normalised_grey, pyramid_scales
from insplug.core.deepmask.model import DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG
from insplug.detectron2.inputs import NormalisedInputs

from .config import register_config_node, signature_defaults
from .masks import instances_mask_tensor

__all__ = ['DeepMask', 'DeepMaskProposalGenerator']


@register_config_node('DEEPMASK')
def _deepmask_node():
    net = signature_defaults(DeepMaskNet)
    node = CN()
    # proposals are class-agnostic (label 0); the key only states the data set's class count
    node.NUM_CLASSES = 1
    node.DEPTH = net['depth']
    node.BASE_CHANNELS = net['base_channels']
    node.NORM = net['norm']
    node.PADDING = net['padding']
    node.WINDOW_SIZE = net['window_size']
    node.CONTEXT = net['context']
    node.MASK_SIZE = net['mask_size']
    node.LABEL_SIZE = net['label_size']
    node.REDUCE_CHANNELS = net['reduce_channels']
    node.EMBED_CHANNELS = net['embed_channels']
    node.SCORE_CHANNELS = net['score_channels']
    node.DROPOUT = net['dropout']
    node.SHARPMASK = False
    node.KM = 32
    node.KS = 32
    node.SHARPMASK_HIDDEN = [64, 64, 64, 32]
    t = DEFAULT_TRAIN_CFG
    node.STAGE = t['stage']
    node.MASK_PER_IMAGE = t['mask_per_image']
    node.POS_PER_IMAGE = t['pos_per_image']
    node.NEG_PER_IMAGE = t['neg_per_image']
    node.SHIFT = t['shift']
    node.SCALE_JITTER = t['scale_jitter']
    node.OBJ_SIZE = 0  # 0: the release's ceil(WINDOW_SIZE 128 / 224)
    node.MIN_AREA = t['min_area']
    node.MIN_SIDE = t['min_side']
    node.SCORE_WEIGHT = t['score_weight']
    s = DEFAULT_TEST_CFG
    node.SMIN = s['smin']
    node.SMAX = s['smax']
    node.SSTEP = s['sstep']
    node.NUM_PROPOSALS = s['num_proposals']
    node.MASK_THR = s['mask_thr']
    node.USE_REFINEMENT = s['use_refinement']
    node.RELEASE_INDEX = s['release_index']
    return node


def _from_cfg(cfg):
    d = cfg.MODEL.INSPLUG.DEEPMASK
    sharp = dict(km=d.KM, ks=d.KS, hidden=tuple(d.SHARPMASK_HIDDEN)) if d.SHARPMASK else None
    net = DeepMaskNet(d.DEPTH, d.BASE_CHANNELS, d.NORM, d.PADDING, d.WINDOW_SIZE, d.CONTEXT,
                      d.MASK_SIZE, d.LABEL_SIZE, d.REDUCE_CHANNELS, d.EMBED_CHANNELS,
                      d.SCORE_CHANNELS, d.DROPOUT, sharp)
    train = dict(stage=d.STAGE, mask_per_image=d.MASK_PER_IMAGE, pos_per_image=d.POS_PER_IMAGE,
                 neg_per_image=d.NEG_PER_IMAGE, shift=d.SHIFT, scale_jitter=d.SCALE_JITTER,
                 obj_size=d.OBJ_SIZE or None, min_area=d.MIN_AREA, min_side=d.MIN_SIDE,
                 score_weight=d.SCORE_WEIGHT)
    test = dict(smin=d.SMIN, smax=d.SMAX, sstep=d.SSTEP, num_proposals=d.NUM_PROPOSALS,
                mask_thr=d.MASK_THR, use_refinement=d.USE_REFINEMENT,
                release_index=d.RELEASE_INDEX)
    return dict(net=net, train_opts=train, test_opts=test,
                pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD))


class _DeepMaskCommon(NormalisedInputs, nn.Module):
    def _setup(self, net, train_opts, test_opts, pixel_mean, pixel_std):
        self.net = net
        self.train_opts = dict(DEFAULT_TRAIN_CFG, **(train_opts or {}))
        self.test_opts = dict(DEFAULT_TEST_CFG, **(test_opts or {}))
        self.register_pixel_stats(pixel_mean, pixel_std)
        self.register_buffer('pad_value', normalised_grey(pixel_mean, pixel_std), False)
        if self.train_opts['stage'] == 'sharpmask':
            if net.refine is None:
                raise ValueError("STAGE 'sharpmask' needs MODEL.INSPLUG.DEEPMASK.SHARPMASK")
            for module in (net.trunk, net.head):
                for p in module.parameters():
                    p.requires_grad_(False)

    def deepmask_losses(self, images: ImageList, gt_instances):
        """Window losses of a normalised, padded batch."""
        hp, wp = images.tensor.shape[-2:]
        boxes, masks = [], []
        for g in gt_instances:
            boxes.append(g.gt_boxes.tensor)
            m = instances_mask_tensor(g, images.tensor.device).to(torch.uint8)
            full = m.new_zeros(m.shape[0], hp, wp)
            full[:, :m.shape[1], :m.shape[2]] = m[:, :hp, :wp]
            masks.append(full)
        samples = self.net.sample_windows(images.tensor, images.image_sizes, boxes, masks,
                                          self.pad_value, self.train_opts)
        return self.net.loss_windows(samples, self.train_opts['score_weight'],
                                     self.train_opts['stage'])

    def deepmask_proposals(self, images: ImageList, out_sizes=None):
        opts = dict(self.test_opts)
        scales = pyramid_scales(opts.pop('smin'), opts.pop('smax'), opts.pop('sstep'))
        return self.net.propose_batch(images.tensor, images.image_sizes, self.pad_value,
                                      out_sizes, scales=scales, **opts)


@META_ARCH_REGISTRY.register()
class DeepMask(_DeepMaskCommon):
    """DeepMask / SharpMask (standalone): class-agnostic mask proposals as ``Instances``
    (``pred_masks``, ``pred_boxes`` from the masks, ``scores`` = sigmoid objectness,
    ``pred_classes`` = 0)."""

    num_classes_key = 'MODEL.INSPLUG.DEEPMASK.NUM_CLASSES'

    @configurable
    def __init__(self, *, net: DeepMaskNet, train_opts: dict, test_opts: dict, pixel_mean,
                 pixel_std):
        super().__init__()
        self._setup(net, train_opts, test_opts, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        return _from_cfg(cfg)

    @property
    def input_size_divisibility(self) -> int:
        return self.net.stride  # the windows' stride, as the mmdet adapter pads

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        if self.training:
            if any('instances' not in x for x in batched_inputs):
                raise KeyError('DeepMask training needs "instances" in every input dict')
            return self.deepmask_losses(images, [x['instances'].to(self.device)
                                                 for x in batched_inputs])
        out_sizes = [(x.get('height', h), x.get('width', w))
                     for x, (h, w) in zip(batched_inputs, images.image_sizes)]
        results = []
        for res, size in zip(self.deepmask_proposals(images, out_sizes), out_sizes):
            inst = Instances(size)
            inst.pred_boxes = Boxes(res['boxes'])
            inst.scores = res['scores']
            inst.pred_classes = torch.zeros_like(res['scores'], dtype=torch.long)
            inst.pred_masks = res['masks']
            results.append({'instances': inst})
        return results


@PROPOSAL_GENERATOR_REGISTRY.register()
class DeepMaskProposalGenerator(_DeepMaskCommon):
    """DeepMask proposals for a ``GeneralizedRCNN``: ``proposal_boxes`` = boxes of the masks,
    ``objectness_logits`` = the score logits; proposals with boxes under ``min_box_size`` px
    (empty masks) are dropped. ``freeze``: a fixed, pre-trained DeepMask (no losses). Losses
    are named ``loss_rpn_mask``, ``loss_rpn_score`` (``loss_rpn_refine``)."""

    @configurable
    def __init__(self, *, net: DeepMaskNet, train_opts: dict, test_opts: dict, pixel_mean,
                 pixel_std, min_box_size: float = 1.0, freeze: bool = False):
        super().__init__()
        self._setup(net, train_opts, test_opts, pixel_mean, pixel_std)
        self.min_box_size, self.freeze = min_box_size, freeze
        if freeze:
            for p in self.net.parameters():
                p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        out = _from_cfg(cfg)
        out['min_box_size'] = cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE or 1.0
        return out

    def forward(self, images: ImageList, features=None, gt_instances=None):
        losses = {}
        if self.training and not self.freeze:
            # loss_mask -> loss_rpn_mask (etc.): the ROI mask head has its own loss_mask
            losses = {k.replace('loss_', 'loss_rpn_', 1): v
                      for k, v in self.deepmask_losses(images, gt_instances).items()}
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            results = self.deepmask_proposals(images)
        self.net.train(was_training)
        proposals = []
        for res, size in zip(results, images.image_sizes):
            boxes = res['boxes']
            keep = ((boxes[:, 2:] - boxes[:, :2]) >= self.min_box_size).all(1)
            inst = Instances(tuple(size))
            inst.proposal_boxes = Boxes(boxes[keep])
            p = res['scores'][keep].clamp(1e-6, 1 - 1e-6)
            inst.objectness_logits = torch.log(p) - torch.log1p(-p)
            proposals.append(inst)
        return proposals, losses
