"""ZSI's zero-shot Mask R-CNN (Zheng et al., CVPR 2021) for detectron2: the twin of the mmdet
``ZSIMaskRCNN`` on the same core (:mod:`insplug.core.zsi`).

Shapes: B images; L pyramid levels; A anchors per location; D embedding dims; S seen and U
unseen classes; R RoIs; M the mask side (28).

* ``ZSIRCNN`` (META_ARCH): ``GeneralizedRCNN`` that hands the RPN's synchronized background
  (:func:`~insplug.core.zsi.heads.rpn_background_vector`) to the box predictor and the mask head
  before every forward (``BBOX_SYNC_BG`` / ``MASK_SYNC_BG``);
* ``ZSIBackgroundAwareRPN`` (PROPOSAL_GENERATOR): detectron2's ``RPN`` with the release's
  background-aware head (``rpn_conv``, ``rpn_cls_conv_T``, ``vec_fb``, ``rpn_reg``,
  :func:`~insplug.core.zsi.heads.semantic_objectness`). The release scores each anchor with a
  softmax over its (background, foreground) pair; detectron2's RPN takes one logit per anchor,
  here ``fg - bg``: ``sigmoid(fg - bg)`` is that softmax's foreground probability and the binary
  cross-entropy on it is the pair's softmax cross-entropy, so the ranking, the proposals and the
  loss are the release's. The RPN losses are normalised by the number of sampled anchors (the
  release's and mmdet's ``avg_factor``), not detectron2's ``BATCH_SIZE_PER_IMAGE x B``; the two
  agree whenever an image has enough anchors to fill its sample. A ground truth's best anchors
  become positive only at IoU >= ``RPN_MIN_POS_IOU`` (the release's 0.3;
  :class:`MinIoULowQualityMatcher`);
* ``ZSIROIHeads`` (ROI_HEADS): ``StandardROIHeads`` whose box predictor is
  :class:`ZSISemanticOutputLayers` (the release's ``SharedFCSemanticBBoxHead`` after the stock
  ``FastRCNNConvFCHead``: word-space projection ``fc_semantic``, semantic classifier
  :func:`~insplug.core.zsi.scoring.semantic_logits`, optional vocabulary and decoder, and at test
  time the seen / ZSI / GZSI score transfer :func:`~insplug.core.zsi.scoring.zsi_scores`);
  GZSI labels (seen then unseen) are mapped by ``LABEL_MAP`` to the evaluation set's order;
* ``ZSISemanticMaskRCNNHead`` (ROI_MASK_HEAD): the core's encoder-decoder
  :class:`~insplug.core.zsi.heads.SemanticMaskHead` with detectron2's mask loss and inference
  (``loss_mask``, ``loss_mask_ed``; seen, unseen or seen + unseen channels by mode).

Labels: seen 0..S-1 in training and in 'seen' mode; unseen 0..U-1 in 'zsi' mode (evaluate on
``register_class_split(..., subset='unseen')``); seen then unseen in 'gzsi' mode, mapped by
``LABEL_MAP`` to the classes of ``subset='all'`` (e.g. ``[0, 1, 2, 3, 4]`` on the shapes demo).
``MODEL.ROI_HEADS.NUM_CLASSES`` is S.

yacs::

    MODEL.META_ARCHITECTURE: ZSIRCNN
    MODEL.PROPOSAL_GENERATOR.NAME: ZSIBackgroundAwareRPN
    MODEL.ROI_HEADS.NAME: ZSIROIHeads
    MODEL.ROI_MASK_HEAD.NAME: ZSISemanticMaskRCNNHead
    MODEL.INSPLUG.ZSI.*            # see _zsi_node
"""
from typing import Dict, List

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import (META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                                 ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, GeneralizedRCNN,
                                 StandardROIHeads)
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads.fast_rcnn import (FastRCNNOutputLayers,
                                                     fast_rcnn_inference_single_image)
from detectron2.modeling.roi_heads.mask_head import (BaseMaskRCNNHead, mask_rcnn_inference,
                                                     mask_rcnn_loss)
from detectron2.structures import Instances
from torch import nn

from insplug.core.zsi.heads import (SemanticMaskHead, encoder_decoder_loss,
                                    init_background_rows, rpn_background_vector,
                                    semantic_objectness, unseen_mask_logits)
from insplug.core.zsi.scoring import zsi_scores
from insplug.core.zsi.vectors import ClassVectorsMixin, SemanticBoxClassifierMixin
from insplug.core.zsi.vectors import class_vectors as load_vectors

from .config import register_config_node, signature_defaults

__all__ = ['ZSIRCNN', 'ZSIBackgroundAwareRPN', 'ZSIROIHeads', 'ZSISemanticOutputLayers',
           'ZSISemanticMaskRCNNHead']

MODES = ('seen', 'zsi', 'gzsi')


@register_config_node('ZSI')
def _zsi_node():
    mask = signature_defaults(SemanticMaskHead)
    node = CN()
    # 'coco_48_17' / 'coco_65_15' (the release's word2vec files, insplug/core/zsi/embeddings;
    # not '48_17': yacs reads that as the integer 4817), 'shapes_demo' or the path of a
    # (D, 1 + S + U) .pt tensor
    node.CLASS_VECTORS = 'coco_48_17'
    node.MODE = 'seen'              # test-time classes: 'seen', 'zsi' (unseen) or 'gzsi' (both)
    node.LABEL_MAP = []             # gzsi: evaluation label of each model label (seen, unseen)
    node.BBOX_SYNC_BG = True
    node.MASK_SYNC_BG = True
    node.VOCABULARY_SIZE = 0        # 0: the release's no-vocabulary classifier
    node.BBOX_WITH_DECODER = False  # needs the vocabulary
    node.LOSS_ED_WEIGHT = signature_defaults(encoder_decoder_loss)['weight']
    node.GZSI_SCORE_THRESH = 0.05   # the release's GZSI score threshold
    # the RPN's low-quality matches need this IoU (the release's min_pos_iou; detectron2: 0)
    node.RPN_MIN_POS_IOU = 0.3
    node.MASK_NUM_CONVS = mask['num_convs']
    node.MASK_CONV_DIM = mask['conv_out_channels']
    node.MASK_WITH_DECODER = mask['with_decoder']
    node.MASK_CHAIN_CONVS = mask['chain_convs']
    return node


def vector_spec(value):
    """``MODEL.INSPLUG.ZSI.CLASS_VECTORS`` -> the core's spec
    (:func:`insplug.core.zsi.vectors.class_vectors`): 'coco_48_17' -> '48_17'."""
    if not isinstance(value, str):
        raise ValueError(f'MODEL.INSPLUG.ZSI.CLASS_VECTORS: a string such as "coco_48_17", '
                         f'not {value!r} (yacs reads an unprefixed 48_17 as a number)')
    return value[len('coco_'):] if value in ('coco_48_17', 'coco_65_15') else value


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f'MODEL.INSPLUG.ZSI.MODE must be one of {MODES}, not {mode!r}')
    return mode


# ----------------------------------------------------------------------------- RPN
class MinIoULowQualityMatcher(Matcher):
    """detectron2's ``Matcher`` whose low-quality matches (each ground truth's best anchors)
    need an IoU of at least ``min_pos_iou``, as the release's (mmdet) ``MaxIoUAssigner``
    (``min_pos_iou=0.3`` for the RPN); detectron2's makes them at any IoU."""

    def __init__(self, *args, min_pos_iou=0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_pos_iou = min_pos_iou

    def set_low_quality_matches_(self, match_labels, match_quality_matrix):
        keep = match_quality_matrix.max(dim=1).values >= self.min_pos_iou
        super().set_low_quality_matches_(match_labels, match_quality_matrix[keep])


class ZSIRPNHead(nn.Module):
    """The release's background-aware RPN head (keys as the mmdet adapter's ``rpn_head``).

    ``forward(features)`` returns detectron2's ``([B, A, H, W] objectness, [B, 4A, H, W]
    deltas)`` per level, the objectness being ``fg - bg`` of the release's softmax pair.
    """

    def __init__(self, in_channels, num_anchors, bg_embedding, feat_channels=-1, box_dim=4):
        super().__init__()
        feat = in_channels if feat_channels < 0 else feat_channels
        d = bg_embedding.numel()
        self.rpn_conv = nn.Conv2d(in_channels, feat, 3, padding=1)
        self.rpn_cls_conv_T = nn.Conv2d(feat, d, 1)
        self.vec_fb = nn.Conv2d(d, 2 * num_anchors, 1, bias=False)
        self.rpn_reg = nn.Conv2d(feat, num_anchors * box_dim, 1)
        for m in (self.rpn_conv, self.rpn_cls_conv_T, self.rpn_reg):  # mmdet RPNHead's init
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.vec_fb.weight, 0, 1)  # the release's normal_init(vec_fb)
        init_background_rows(self.vec_fb.weight, bg_embedding)

    def pair_logits(self, x):
        """(B, 2A, H, W) release-layout (bg, fg) logits and (B, F, H, W) shared feature."""
        return semantic_objectness(x, self.rpn_conv, self.rpn_cls_conv_T, self.vec_fb.weight)

    def forward(self, features: List[torch.Tensor]):
        objectness, deltas = [], []
        for x in features:
            logits, feat = self.pair_logits(x)
            objectness.append(logits[:, 1::2] - logits[:, 0::2])
            deltas.append(self.rpn_reg(feat))
        return objectness, deltas

    def background_vector(self):
        """(D,) the synchronized background (mean of ``vec_fb``'s background rows)."""
        return rpn_background_vector(self.vec_fb.weight)


@PROPOSAL_GENERATOR_REGISTRY.register()
class ZSIBackgroundAwareRPN(RPN):
    """detectron2's ``RPN`` with :class:`ZSIRPNHead` and the release's loss normaliser (the
    number of sampled anchors). ``MODEL.RPN.CONV_DIMS: [-1]`` (the input width) or one width."""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        shapes = [input_shape[f] for f in cfg.MODEL.RPN.IN_FEATURES]
        channels = {s.channels for s in shapes}
        if len(channels) != 1:
            raise ValueError('ZSIBackgroundAwareRPN needs equal channels on its input features')
        num_anchors = set(ret['anchor_generator'].num_cell_anchors)
        if len(num_anchors) != 1:
            raise ValueError('ZSIBackgroundAwareRPN needs the same anchors on every level')
        dims = list(cfg.MODEL.RPN.CONV_DIMS)
        if len(dims) != 1:
            raise ValueError('the background-aware RPN has one 3x3 conv: MODEL.RPN.CONV_DIMS '
                             'takes one width (-1: the input width)')
        bg = load_vectors(vector_spec(cfg.MODEL.INSPLUG.ZSI.CLASS_VECTORS))[:, 0].clone()
        ret['anchor_matcher'] = MinIoULowQualityMatcher(
            cfg.MODEL.RPN.IOU_THRESHOLDS, cfg.MODEL.RPN.IOU_LABELS, allow_low_quality_matches=True,
            min_pos_iou=cfg.MODEL.INSPLUG.ZSI.RPN_MIN_POS_IOU)
        ret['head'] = ZSIRPNHead(channels.pop(), num_anchors.pop(), bg, dims[0],
                                 ret['anchor_generator'].box_dim)
        return ret

    def background_vector(self):
        return self.rpn_head.background_vector()

    def losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        losses = super().losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas,
                                gt_boxes)
        # detectron2 divides by BATCH_SIZE_PER_IMAGE x B; the release by the sampled anchors
        sampled = sum(int((g >= 0).sum()) for g in gt_labels)
        scale = self.batch_size_per_image * len(gt_labels) / max(sampled, 1)
        return {k: v * scale for k, v in losses.items()}


# ----------------------------------------------------------------------------- box predictor
class ZSISemanticOutputLayers(SemanticBoxClassifierMixin, FastRCNNOutputLayers):
    """The release's semantic box classifier and box regression after detectron2's box head.

    Keys: ``fc_semantic`` (box feature -> D), ``kernel_semantic``, optional ``voc`` buffer
    (D, V), ``d_kernel_semantic`` / ``d_fc_semantic`` (decoder), ``bbox_pred`` (S x 4).
    ``forward`` returns detectron2's ``(scores (R, S + 1) background last, deltas (R, 4S))``.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, class_vectors='48_17', vocabulary_size=0,
                 with_decoder=False, loss_ed_weight=0.5, mode='seen', gzsi_score_thresh=0.05,
                 **kwargs):
        super().__init__(input_shape, **kwargs)
        self._set_vectors(class_vectors, self.num_classes)
        if with_decoder and not vocabulary_size:
            raise ValueError('the release\'s bbox decoder needs the vocabulary '
                             '(MODEL.INSPLUG.ZSI.VOCABULARY_SIZE)')
        self.mode = _check_mode(mode)
        self.with_decoder, self.loss_ed_weight = with_decoder, loss_ed_weight
        self.gzsi_score_thresh = gzsi_score_thresh
        del self.cls_score
        in_dim = self.bbox_pred.in_features
        d = self.class_vectors.shape[0]
        self.fc_semantic = nn.Linear(in_dim, d)
        nn.init.normal_(self.fc_semantic.weight, 0, 0.001)  # the release's init
        nn.init.constant_(self.fc_semantic.bias, 0)
        if vocabulary_size:
            self.register_buffer('voc', torch.zeros(d, vocabulary_size))
            self.kernel_semantic = nn.Linear(vocabulary_size, d)
            nn.init.normal_(self.kernel_semantic.weight, 0, 0.001)
            nn.init.constant_(self.kernel_semantic.bias, 0)
        else:
            self.voc = None
            self.kernel_semantic = nn.Linear(self.num_classes + 1, self.num_classes + 1)
        if with_decoder:
            self.d_kernel_semantic = nn.Linear(d, vocabulary_size)
            self.d_fc_semantic = nn.Linear(d, in_dim)
        self._ed = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        z = cfg.MODEL.INSPLUG.ZSI
        ret.update(class_vectors=vector_spec(z.CLASS_VECTORS), vocabulary_size=z.VOCABULARY_SIZE,
                   with_decoder=z.BBOX_WITH_DECODER, loss_ed_weight=z.LOSS_ED_WEIGHT,
                   mode=z.MODE, gzsi_score_thresh=z.GZSI_SCORE_THRESH)
        return ret

    def forward(self, x):
        x = x.flatten(1)
        scores, ed = self.semantic_scores(x)  # background last, as detectron2's
        if ed is not None:
            self._ed = ed
        return scores, self.bbox_pred(x)

    def losses(self, predictions, proposals):
        losses = super().losses(predictions, proposals)
        if self._ed is not None:
            losses['loss_bbox_ed'] = encoder_decoder_loss(*self._ed, self.loss_ed_weight)
            self._ed = None
        return losses

    def inference(self, predictions, proposals: List[Instances]):
        """Per image: the transferred scores of the mode, each class set NMS'ed on its own
        (unseen class j keeps seen class j's box regression, as the release), GZSI unseen
        labels after the seen ones."""
        boxes = self.predict_boxes(predictions, proposals)
        cls_scores, _ = predictions
        logits = torch.cat([cls_scores[:, -1:], cls_scores[:, :-1]], dim=1)  # release order
        vec, vec_unseen = self.split_vectors()
        scores = zsi_scores(logits, vec, vec_unseen, self.mode)
        sets = scores if self.mode == 'gzsi' else (scores,)
        thresh = self.gzsi_score_thresh if self.mode == 'gzsi' else self.test_score_thresh
        offsets = (0, self.num_classes) if self.mode == 'gzsi' else (0,)
        counts = [len(p) for p in proposals]
        results, kept = [], []
        for i, (b, p) in enumerate(zip(boxes, proposals)):
            parts, idx = [], []
            for s, offset in zip(sets, offsets):
                s = s.split(counts)[i]
                s = torch.cat([s[:, 1:], s[:, :1]], dim=1)  # background last
                inst, keep = fast_rcnn_inference_single_image(
                    b[:, :4 * (s.shape[1] - 1)], s, p.image_size, thresh,
                    self.test_nms_thresh, self.test_topk_per_image)
                inst.pred_classes = inst.pred_classes + offset
                parts.append(inst)
                idx.append(keep)
            results.append(Instances.cat(parts) if len(parts) > 1 else parts[0])
            kept.append(torch.cat(idx))
        return results, kept


# ----------------------------------------------------------------------------- mask head
@ROI_MASK_HEAD_REGISTRY.register()
class ZSISemanticMaskRCNNHead(ClassVectorsMixin, BaseMaskRCNNHead):
    """The release's ``SemanticFCNMaskHead`` (core :class:`SemanticMaskHead`, keys
    ``semantic.*``) with detectron2's mask loss (``loss_mask`` on the seen channels plus the
    encoder-decoder ``loss_mask_ed``) and inference (``pred_masks`` (N, 1, M, M) probabilities
    of the predicted class's channel: seen, unseen or seen + unseen by mode)."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_classes, class_vectors='48_17',
                 num_convs=4, conv_dim=256, with_decoder=True, chain_convs=False,
                 loss_ed_weight=0.5, mode='seen', **kwargs):
        super().__init__(**kwargs)
        self._set_vectors(class_vectors, num_classes)
        self.mode = _check_mode(mode)
        self.loss_ed_weight = loss_ed_weight
        self.semantic = SemanticMaskHead(input_shape.channels, conv_dim, num_convs,
                                         self.class_vectors.shape[0], with_decoder, chain_convs)
        self.semantic.init_weights()

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        z = cfg.MODEL.INSPLUG.ZSI
        ret.update(input_shape=input_shape, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                   class_vectors=vector_spec(z.CLASS_VECTORS), num_convs=z.MASK_NUM_CONVS,
                   conv_dim=z.MASK_CONV_DIM, with_decoder=z.MASK_WITH_DECODER,
                   chain_convs=z.MASK_CHAIN_CONVS, loss_ed_weight=z.LOSS_ED_WEIGHT, mode=z.MODE)
        return ret

    def mask_logits(self, x):
        """(N, C, 14, 14) RoI features -> (logits of the mode (N, K, M, M), conv4_x, rec)."""
        vec, vec_unseen = self.split_vectors()
        seen, conv4_x, rec = self.semantic(x, vec)
        if self.training or self.mode == 'seen':
            return seen[:, 1:], conv4_x, rec
        unseen = unseen_mask_logits(seen, vec, vec_unseen)[:, 1:]
        return (unseen if self.mode == 'zsi' else torch.cat([seen[:, 1:], unseen], 1),
                conv4_x, rec)

    def forward(self, x, instances: List[Instances]):
        logits, conv4_x, rec = self.mask_logits(x)
        if self.training:
            losses = {'loss_mask': mask_rcnn_loss(logits, instances, self.vis_period)
                      * self.loss_weight}
            if rec is not None:
                losses['loss_mask_ed'] = encoder_decoder_loss(conv4_x, rec, self.loss_ed_weight)
            return losses
        mask_rcnn_inference(logits, instances)
        return instances


# ----------------------------------------------------------------------------- ROI heads
@ROI_HEADS_REGISTRY.register()
class ZSIROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with :class:`ZSISemanticOutputLayers` as box predictor (box head:
    detectron2's ``FastRCNNConvFCHead``, 2 fcs as the release) and a ZSI mask head; GZSI labels
    mapped by ``label_map`` after the masks are predicted."""

    @configurable
    def __init__(self, *, label_map=(), **kwargs):
        super().__init__(**kwargs)
        self.label_map = list(label_map) or None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret['label_map'] = list(cfg.MODEL.INSPLUG.ZSI.LABEL_MAP)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret['box_predictor'] = ZSISemanticOutputLayers(cfg, ret['box_head'].output_shape)
        return ret

    def set_mode(self, mode, label_map=None):
        """Switch the test-time classes ('seen', 'zsi', 'gzsi') of both heads."""
        self.box_predictor.mode = self.mask_head.mode = _check_mode(mode)
        self.label_map = None if not label_map else list(label_map)

    def forward_with_given_boxes(self, features, instances):
        instances = super().forward_with_given_boxes(features, instances)
        if self.label_map is not None:
            for inst in instances:
                inst.pred_classes = inst.pred_classes.new_tensor(
                    self.label_map)[inst.pred_classes]
        return instances


# ----------------------------------------------------------------------------- meta-arch
@META_ARCH_REGISTRY.register()
class ZSIRCNN(GeneralizedRCNN):
    """The release's ``ZeroShotMaskRCNN``: ``GeneralizedRCNN`` passing the RPN's synchronized
    background to the box predictor (``BBOX_SYNC_BG``) and the mask head (``MASK_SYNC_BG``;
    the release's 48/17 mask head keeps the file's background) before every forward."""

    num_classes_key = 'MODEL.ROI_HEADS.NUM_CLASSES'

    @configurable
    def __init__(self, *, bbox_sync_bg=True, mask_sync_bg=True, **kwargs):
        super().__init__(**kwargs)
        self.bbox_sync_bg, self.mask_sync_bg = bbox_sync_bg, mask_sync_bg

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        z = cfg.MODEL.INSPLUG.ZSI
        ret.update(bbox_sync_bg=z.BBOX_SYNC_BG, mask_sync_bg=z.MASK_SYNC_BG)
        return ret

    def _sync_background(self):
        bg = self.proposal_generator.background_vector()
        self.roi_heads.box_predictor.bg_vector = bg if self.bbox_sync_bg else None
        if getattr(self.roi_heads, 'mask_on', False):
            self.roi_heads.mask_head.bg_vector = bg if self.mask_sync_bg else None

    def forward(self, batched_inputs):
        self._sync_background()
        return super().forward(batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        self._sync_background()
        return super().inference(batched_inputs, detected_instances, do_postprocess)

