"""ZSI's zero-shot Mask R-CNN as mmdet components (the release's ``ZeroShotMaskRCNN`` with
``BackgroundAwareRPNHead``, ``SharedFCSemanticBBoxHead`` and ``SemanticFCNMaskHead``).

* ``ZSIBackgroundAwareRPNHead``: softmax objectness from the word space; ``vec_fb`` keeps the
  release's (bg, fg) rows per anchor, the logits are reordered to mmdet 3.x's (fg, bg);
* ``ZSISemanticBBoxHead``: 2 shared fcs, the RoI projected to the word space and scored against
  the class embeddings (``cls_score`` in mmdet's layout, background last), optional
  vocabulary and decoder (MSE 0.5, ``loss_bbox_ed``); at test time the seen / ZSI / GZSI
  score transfer (``mode``);
* ``ZSISemanticMaskHead``: the encoder-decoder mask head (``loss_mask_ed``), seen / unseen
  channels by ``mode``;
* ``ZSIMaskRCNN``: passes the RPN's synchronized background to the heads before every forward
  and, for GZSI, maps the model's labels (seen then unseen) to the dataset's (``label_map``).

Labels: seen classes 0..S-1 in training and in 'seen' mode; unseen 0..U-1 in 'zsi' mode
(dataset ``ClassSplitCocoDataset(subset='unseen')``); seen then unseen (0..S+U-1) in 'gzsi'
mode, remapped by ``label_map`` to the dataset's category-id order (``subset='all'``).
"""
import torch
from mmdet.models.detectors import MaskRCNN
from mmdet.models.dense_heads import RPNHead
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.structures.bbox import get_box_tensor, scale_boxes
from mmengine.structures import InstanceData
from torch import nn

from insplug.core.zsi.heads import (SemanticMaskHead, background_last, encoder_decoder_loss,
                                    init_background_rows, rpn_background_vector,
                                    semantic_objectness, unseen_mask_logits)
from insplug.core.zsi.scoring import transfer_scores
from insplug.core.zsi.vectors import ClassVectorsMixin, SemanticBoxClassifierMixin
from insplug.core.zsi.vectors import class_vectors as load_vectors
from insplug.registry import MODELS

MODES = ('seen', 'zsi', 'gzsi')


@MODELS.register_module()
class ZSIBackgroundAwareRPNHead(RPNHead):
    """The release's background-aware RPN (one 3x3 conv, word-space projection, ``vec_fb``).

    Args:
        class_vectors: embedding spec (:func:`insplug.core.zsi.vectors.class_vectors`); only
            its background column is used (the background rows' initial value).
        in_channels, feat_channels, anchor_generator, ...: as ``RPNHead`` (softmax loss:
            ``loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False)``).
    """

    def __init__(self, in_channels, class_vectors='48_17', **kwargs):
        self._bg_embedding = load_vectors(class_vectors)[:, 0].clone()
        self.semantic_dims = self._bg_embedding.numel()
        super().__init__(in_channels, **kwargs)
        assert not self.use_sigmoid_cls, 'the background-aware RPN is a softmax (bg, fg) head'

    def _init_layers(self):
        a = self.num_base_priors
        self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls_conv_T = nn.Conv2d(self.feat_channels, self.semantic_dims, 1)
        self.vec_fb = nn.Conv2d(self.semantic_dims, 2 * a, 1, bias=False)
        self.rpn_reg = nn.Conv2d(self.feat_channels, a * self.bbox_coder.encode_size, 1)

    def init_weights(self):
        super().init_weights()  # Normal(std=0.01) on the convs
        nn.init.normal_(self.vec_fb.weight, 0, 1)  # the release's normal_init(vec_fb)
        init_background_rows(self.vec_fb.weight, self._bg_embedding)

    def forward_single(self, x):
        logits, feat = semantic_objectness(x, self.rpn_conv, self.rpn_cls_conv_T,
                                           self.vec_fb.weight)
        return background_last(logits), self.rpn_reg(feat)

    def background_vector(self):
        """(D,) the synchronized background (mean of ``vec_fb``'s background rows)."""
        return rpn_background_vector(self.vec_fb.weight)


@MODELS.register_module()
class ZSISemanticBBoxHead(SemanticBoxClassifierMixin, Shared2FCBBoxHead):
    """The release's ``SharedFCSemanticBBoxHead`` (2 shared fcs; ``num_classes`` = S).

    Args:
        class_vectors: embedding spec; num_classes: S (the seen classes).
        vocabulary_size: V of the vocabulary path (``voc`` (D, V), a buffer filled from the
            checkpoint or ``load_vocabulary``); None: the release's no-vocabulary path
            ``f @ tanh(kernel(vec))`` (no decoder then, as in the release).
        with_decoder: the encoder-decoder reconstruction loss (needs the vocabulary).
        loss_ed_weight: 0.5 (release).
        mode: test-time scores, 'seen', 'zsi' or 'gzsi'.
    """

    def __init__(self, class_vectors='48_17', vocabulary_size=None, with_decoder=False,
                 loss_ed_weight=0.5, mode='seen', gzsi_score_thr=0.05, **kwargs):
        super().__init__(**kwargs)
        self._set_vectors(class_vectors, self.num_classes)
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, not {mode!r}')
        if with_decoder and vocabulary_size is None:
            raise ValueError('the release\'s bbox decoder needs the vocabulary')
        self.mode, self.with_decoder = mode, with_decoder
        self.loss_ed_weight, self.gzsi_score_thr = loss_ed_weight, gzsi_score_thr
        d = self.class_vectors.shape[0]
        del self.fc_cls
        self.fc_semantic = nn.Linear(self.cls_last_dim, d)
        if vocabulary_size is not None:
            self.register_buffer('voc', torch.zeros(d, vocabulary_size))
            self.kernel_semantic = nn.Linear(vocabulary_size, d)
        else:
            self.voc = None
            self.kernel_semantic = nn.Linear(self.num_classes + 1, self.num_classes + 1)
        if with_decoder:
            self.d_kernel_semantic = nn.Linear(d, vocabulary_size)
            self.d_fc_semantic = nn.Linear(d, self.cls_last_dim)
        self._ed = None
        if isinstance(self.init_cfg, list):  # mmdet's default: fc_cls no longer exists
            self.init_cfg = [c for c in self.init_cfg
                             if c.get('override') != dict(name='fc_cls')]

    def init_weights(self):
        super().init_weights()
        # the release's BBoxSemanticHead.init_weights
        nn.init.normal_(self.fc_semantic.weight, 0, 0.001)
        nn.init.constant_(self.fc_semantic.bias, 0)
        if self.voc is not None:
            nn.init.normal_(self.kernel_semantic.weight, 0, 0.001)
            nn.init.constant_(self.kernel_semantic.bias, 0)

    def forward(self, x):
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = self.relu(fc(x))
        cls_score, ed = self.semantic_scores(x)  # mmdet's layout: background last
        if ed is not None:
            self._ed = ed
        return cls_score, self.fc_reg(x)

    def loss_and_target(self, cls_score, bbox_pred, rois, sampling_results, rcnn_train_cfg,
                        concat=True, reduction_override=None):
        out = super().loss_and_target(cls_score, bbox_pred, rois, sampling_results,
                                      rcnn_train_cfg, concat, reduction_override)
        if self._ed is not None:
            out['loss_bbox']['loss_bbox_ed'] = encoder_decoder_loss(*self._ed,
                                                                    self.loss_ed_weight)
            self._ed = None
        return out

    def _predict_by_feat_single(self, roi, cls_score, bbox_pred, img_meta, rescale=False,
                                rcnn_test_cfg=None):
        if roi.shape[0] == 0 or rcnn_test_cfg is None:
            return super()._predict_by_feat_single(roi, cls_score, bbox_pred, img_meta,
                                                   rescale, rcnn_test_cfg)
        n = roi.size(0)
        logits = torch.cat([cls_score[:, -1:], cls_score[:, :-1]], dim=1)  # release order
        vec, vec_unseen = self.split_vectors()
        r = roi.repeat_interleave(self.num_classes, dim=0)
        bboxes = self.bbox_coder.decode(r[..., 1:], bbox_pred.view(-1, 4),
                                        max_shape=img_meta['img_shape'])
        if rescale and bboxes.size(0) > 0:
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta['scale_factor']])
        bboxes = get_box_tensor(bboxes).view(n, self.num_classes, 4)
        sets = []
        if self.mode in ('seen', 'gzsi'):
            sets.append((bboxes, transfer_scores(logits, vec, vec), 0))
        if self.mode in ('zsi', 'gzsi'):
            # the release reads unseen class j's box from seen class j's regression
            u = vec_unseen.shape[1] - 1
            sets.append((bboxes[:, :u], transfer_scores(logits, vec, vec_unseen),
                         self.num_classes if self.mode == 'gzsi' else 0))
        thr = self.gzsi_score_thr if self.mode == 'gzsi' else rcnn_test_cfg.score_thr
        dets, labels = [], []
        for b, s, offset in sets:
            det, lab = multiclass_nms(b.reshape(n, -1), torch.cat([s[:, 1:], s[:, :1]], 1),
                                      thr, rcnn_test_cfg.nms, rcnn_test_cfg.max_per_img)
            dets.append(det)
            labels.append(lab + offset)
        det, lab = torch.cat(dets), torch.cat(labels)
        results = InstanceData()
        results.bboxes, results.scores, results.labels = det[:, :4], det[:, -1], lab
        return results


@MODELS.register_module()
class ZSISemanticMaskHead(ClassVectorsMixin, FCNMaskHead):
    """The release's ``SemanticFCNMaskHead`` (deconv, learnable kernel, no vocabulary).

    Args:
        class_vectors: embedding spec; num_classes: S.
        num_convs, in_channels, conv_out_channels: the trunk; semantic_dims come from the
            vectors.
        with_decoder, loss_ed_weight: the encoder-decoder loss (``loss_mask_ed``, 0.5).
        chain_convs: False (the release: every trunk conv reads the RoI feature), True
            (chained, as Mask R-CNN).
        mode: 'seen', 'zsi' or 'gzsi' (seen then unseen channels).
        loss_mask: as ``FCNMaskHead``.
    """

    def __init__(self, class_vectors='48_17', num_classes=48, num_convs=4, in_channels=256,
                 conv_out_channels=256, with_decoder=True, loss_ed_weight=0.5,
                 chain_convs=False, mode='seen', **kwargs):
        super().__init__(num_convs=0, in_channels=in_channels, conv_out_channels=in_channels,
                         num_classes=num_classes, upsample_cfg=dict(type=None), **kwargs)
        del self.conv_logits
        self._set_vectors(class_vectors, num_classes)
        self.mode, self.loss_ed_weight = mode, loss_ed_weight
        self.semantic = SemanticMaskHead(in_channels, conv_out_channels, num_convs,
                                         self.class_vectors.shape[0], with_decoder, chain_convs)
        self._ed = None

    def init_weights(self):
        self.semantic.init_weights()

    def forward(self, x):
        vec, vec_unseen = self.split_vectors()
        seen, conv4_x, rec = self.semantic(x, vec)
        if self.training:
            if rec is not None:
                self._ed = (conv4_x, rec)
            return seen[:, 1:]
        if self.mode == 'seen':
            return seen[:, 1:]
        unseen = unseen_mask_logits(seen, vec, vec_unseen)[:, 1:]
        return unseen if self.mode == 'zsi' else torch.cat([seen[:, 1:], unseen], dim=1)

    def loss_and_target(self, mask_preds, sampling_results, batch_gt_instances,
                        rcnn_train_cfg):
        out = super().loss_and_target(mask_preds, sampling_results, batch_gt_instances,
                                      rcnn_train_cfg)
        if self._ed is not None:
            out['loss_mask']['loss_mask_ed'] = encoder_decoder_loss(*self._ed,
                                                                    self.loss_ed_weight)
            self._ed = None
        return out


@MODELS.register_module()
class ZSIMaskRCNN(MaskRCNN):
    """The release's ``ZeroShotMaskRCNN``.

    Args:
        bbox_sync_bg, mask_sync_bg: replace the background embedding of the box / mask
            classifier by the RPN's (release: both True; its 48/17 mask head keeps the file's
            background since the head's own ``sync_bg`` is off there).
        label_map: GZSI only: dataset label of each model label (seen then unseen), e.g. from
            :func:`gzsi_label_map`.
        mode: sets the heads' test mode ('seen', 'zsi', 'gzsi').
        the rest: as ``MaskRCNN``.
    """

    def __init__(self, *args, bbox_sync_bg=True, mask_sync_bg=True, label_map=None,
                 mode=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bbox_sync_bg, self.mask_sync_bg = bbox_sync_bg, mask_sync_bg
        self.label_map = None if label_map is None else list(label_map)
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f'mode must be one of {MODES}, not {mode!r}')
            self.roi_head.bbox_head.mode = mode
            self.roi_head.mask_head.mode = mode

    def _sync_background(self):
        bg = self.rpn_head.background_vector()
        self.roi_head.bbox_head.bg_vector = bg if self.bbox_sync_bg else None
        self.roi_head.mask_head.bg_vector = bg if self.mask_sync_bg else None

    def loss(self, batch_inputs, batch_data_samples):
        self._sync_background()
        return super().loss(batch_inputs, batch_data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        self._sync_background()
        samples = super().predict(batch_inputs, batch_data_samples, rescale)
        if self.label_map is not None:
            for s in samples:
                lab = s.pred_instances.labels
                s.pred_instances.labels = lab.new_tensor(self.label_map)[lab]
        return samples


def gzsi_label_map(seen_classes, unseen_classes, dataset_classes):
    """Dataset label of each GZSI model label (seen classes, then unseen ones).

    Args:
        seen_classes, unseen_classes: class names in the model's order.
        dataset_classes: the evaluation set's classes (``ClassSplitCocoDataset(subset='all')``).

    Returns:
        list of S + U ints.
    """
    index = {n: i for i, n in enumerate(dataset_classes)}
    return [index[n] for n in tuple(seen_classes) + tuple(unseen_classes)]
