"""PRM and CountSeg detectors (mmdet API): trained from image-level labels / counts only.

``PRMSegmentor``: a fully convolutional classifier (backbone's last stage + 1x1 conv to K class
response maps), peak stimulation in training (multi-label soft-margin loss), peak
back-propagation and proposal retrieval at test time (``insplug.core.prm``).

``CountSegSegmentor``: the same trunk with a 1x1 conv to ``fc_channels`` maps split in two
halves, each through BN-ReLU-1x1 conv to K maps: the classification branch (peak stimulation)
and the density branch, trained with the two-stage lower-count losses of
``insplug.core.countseg``; test: PRM retrieval with the density term.

Predictions are ``InstanceData`` (masks, labels, scores, bboxes from the masks) for CocoMetric.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmengine.structures import InstanceData

from insplug.core.countseg import count_prediction, sample_absent_classes, stage1_loss, \
    stage2_loss, top_count_peak_mask
from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.prm import (peak_backprop_mode, peak_response_maps,
                              peak_stimulation, peak_values, release_resize, retrieve_instances,
                              select_inference_peaks)
from insplug.registry import MODELS, TASK_UTILS

PRM_TRAIN_CFG = dict(win_size=3, sub_pixel_locating_factor=8, filter_type='median',
                     exact_grad=False)
# the release's demo: model built with the constructor defaults (sub-pixel factor 1) and
# retrieval_cfg=dict(proposals=..., param=(0.95, 1e-5, 0.8)); forward defaults
PRM_TEST_CFG = dict(win_size=3, sub_pixel_locating_factor=1, filter_type='median',
                    class_threshold=0.0, peak_threshold=30.0, peak_rule='prm', bg_factor=0.95,
                    penalty=1e-5, balance=0.8, contour_width=5, size_limits=(0.00002, 0.85),
                    proposal_count=100, nms_thr=0.3, chunk=16, max_per_img=100, max_peaks=None)


def _image_field(data_samples, key, device):
    return torch.stack([torch.as_tensor(s.metainfo[key]) for s in data_samples]).to(device)


@MODELS.register_module()
class PRMSegmentor(BaseDetector):
    """Peak Response Mapping (Zhou et al., CVPR 2018).

    Args:
        backbone: config of a trunk whose LAST output is used (e.g. mmdet ResNet,
            ``out_indices=(3,)``).
        num_classes: K.
        in_channels: channels of that output.
        proposal_source: TASK_UTILS config (``FileProposals`` / ``ColourRegionProposals``).
        train_cfg / test_cfg: override ``PRM_TRAIN_CFG`` / ``PRM_TEST_CFG``.
    """
    default_train_cfg = PRM_TRAIN_CFG
    default_test_cfg = PRM_TEST_CFG

    def __init__(self, backbone: dict, num_classes: int, in_channels: int,
                 proposal_source: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self._build_heads(in_channels)
        self.train_cfg = dict(self.default_train_cfg, **(train_cfg or {}))
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        self.proposal_source = TASK_UTILS.build(
            proposal_source or dict(type='ColourRegionProposals'))

    # ------------------------------------------------------------------ maps
    def _build_heads(self, in_channels):
        self.classifier = nn.Conv2d(in_channels, self.num_classes, 1)

    def extract_feat(self, inputs):
        feats = self.backbone(inputs)
        return feats[-1] if isinstance(feats, (list, tuple)) else feats

    @staticmethod
    def _upsample(maps, factor):
        if factor > 1:
            maps = F.interpolate(maps, scale_factor=factor, mode='bilinear', align_corners=True)
        return maps

    def class_maps(self, inputs, factor=1):
        """(B, 3, H, W) -> class response maps (B, K, h*factor, w*factor)."""
        return self._upsample(self.classifier(self.extract_feat(inputs)), factor)

    def _forward(self, inputs, data_samples=None):
        return self.class_maps(inputs, self.test_cfg['sub_pixel_locating_factor'])

    # ------------------------------------------------------------------ training
    def loss(self, inputs, data_samples):
        cfg = self.train_cfg
        crm = self.class_maps(inputs, cfg['sub_pixel_locating_factor'])
        scores, _, _ = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'],
                                        cfg['exact_grad'])
        labels = _image_field(data_samples, 'gt_image_labels', scores.device).to(scores.dtype)
        return dict(loss_cls=F.multilabel_soft_margin_loss(scores, labels))

    # ------------------------------------------------------------------ inference
    def _test_maps(self, inputs):
        """Class maps for peaks, and density maps (None for PRM)."""
        return self.class_maps(inputs, self.test_cfg['sub_pixel_locating_factor']), None

    def _retrieval_extra(self, density, labels, proposals):
        return {}

    def predict(self, inputs, data_samples, rescale: bool = True):
        cfg = self.test_cfg
        was_training = self.training
        self.eval()
        with torch.no_grad():
            crm, density = self._test_maps(inputs)
            scores, _, peak_list = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'])
        results = []
        for i, sample in enumerate(data_samples):
            peaks = peak_list[peak_list[:, 0] == i]
            keep = select_inference_peaks(scores[i], peak_values(crm, peaks), peaks[:, 1],
                                          cfg['class_threshold'], cfg['peak_threshold'],
                                          cfg['peak_rule'])
            peaks = peaks[keep]
            if cfg['max_peaks'] is not None:  # insplug option (None: the release, all peaks)
                top = peak_values(crm, peaks).argsort(descending=True, stable=True)
                peaks = peaks[top[:cfg['max_peaks']].sort().values]
            results.append(self._predict_one(inputs[i], sample, crm[i], peaks,
                                              None if density is None else density[i],
                                              rescale))
        self.train(was_training)
        return self.add_pred_to_datasample(data_samples, results)

    def _predict_one(self, image, sample, crm, peaks, density, rescale):
        cfg = self.test_cfg
        h, w = image.shape[-2:]
        labels = peaks[:, 1]
        with peak_backprop_mode(self):
            prms = peak_response_maps(lambda x: self._test_maps(x)[0], image, peaks,
                                      cfg['chunk'])
        classes, inverse = labels.unique(return_inverse=True)
        class_maps_up = release_resize(crm[classes], (h, w))[inverse].to(image.device)
        proposals = self.proposal_source(image, sample, self.data_preprocessor)
        proposals = proposals[:cfg['proposal_count']]
        extra = self._retrieval_extra(density, labels, proposals)
        masks, labels, scores = retrieve_instances(
            prms.double(), labels, class_maps_up, proposals, bg_factor=cfg['bg_factor'],
            penalty=cfg['penalty'], balance=cfg['balance'], contour_width=cfg['contour_width'],
            size_limits=cfg['size_limits'], nms_thr=cfg['nms_thr'], **extra)
        masks, labels, scores = (masks[:cfg['max_per_img']], labels[:cfg['max_per_img']],
                                 scores[:cfg['max_per_img']])
        img_h, img_w = sample.metainfo['img_shape'][:2]
        masks = masks[:, :img_h, :img_w]
        if rescale and masks.shape[0]:
            ori_h, ori_w = sample.metainfo['ori_shape'][:2]
            masks = F.interpolate(masks[:, None].float(), size=(ori_h, ori_w),
                                  mode='bilinear', align_corners=False)[:, 0] > 0.5
        out = InstanceData()
        out.masks = masks.bool()
        out.labels = labels.long()
        out.scores = scores.float()
        out.bboxes = masks_to_boxes(out.masks).float() if masks.shape[0] else \
            masks.new_zeros((0, 4), dtype=torch.float32)
        return out


COUNTSEG_TRAIN_CFG = dict(win_size=3, sub_pixel_locating_factor=1, filter_type='median',
                          exact_grad=False, stage1_iters=0, stage1_subitizing=5,
                          stage2_subitizing=5, rank_weight=0.1, rare_fraction=0.2,
                          neg_prob=1.1)
# the release's demo-pascal: model(input, 1, peak_threshold=20, retrieval_cfg=dict(
# proposal_count=100, param=(0.95, 1e-5, 0.8, 0.2))) with forward's class_threshold=0.5
COUNTSEG_TEST_CFG = dict(PRM_TEST_CFG, class_threshold=0.5, peak_threshold=20.0,
                         peak_rule='countseg', density_factor=0.2, density_norm=None)


@MODELS.register_module()
class CountSegSegmentor(PRMSegmentor):
    """CountSeg / ILC (Cholakkal et al., CVPR 2019): image-level lower-count supervision.

    Args:
        fc_channels: output channels of the 1x1 conv after the trunk (release: 60 = 3 K for
            VOC); each half feeds one branch.
        train_cfg: ``stage1_iters`` iterations with the stage-1 loss, then stage 2 (the
            release: 20 of 300 epochs on VOC); the rest as ``COUNTSEG_TRAIN_CFG``.
    """
    default_train_cfg = COUNTSEG_TRAIN_CFG
    default_test_cfg = COUNTSEG_TEST_CFG

    def __init__(self, *args, fc_channels: Optional[int] = None, **kwargs):
        self._fc_channels = fc_channels
        self._local_iter = 0
        super().__init__(*args, **kwargs)

    def _build_heads(self, in_channels):
        fc = self._fc_channels or 3 * self.num_classes
        self.classifier = nn.Conv2d(in_channels, fc, 1)

        def branch():
            return nn.Sequential(nn.BatchNorm2d(fc // 2), nn.ReLU(inplace=True),
                                 nn.Conv2d(fc // 2, self.num_classes, 1))
        self.cls_branch = branch()
        self.density_branch = branch()

    def branch_maps(self, inputs, factor=1):
        """(B, 3, H, W) -> classification maps (B, K, h', w'), density maps (B, K, h', w')."""
        x = self._upsample(self.classifier(self.extract_feat(inputs)), factor)
        a, b = x.chunk(2, 1)
        return self.cls_branch(a.contiguous()), self.density_branch(b.contiguous())

    def class_maps(self, inputs, factor=1):
        return self.branch_maps(inputs, factor)[0]

    def _forward(self, inputs, data_samples=None):
        return self.branch_maps(inputs, self.test_cfg['sub_pixel_locating_factor'])

    def _test_maps(self, inputs):
        return self.branch_maps(inputs, self.test_cfg['sub_pixel_locating_factor'])

    def _current_iter(self):
        try:
            from mmengine.logging import MessageHub
            it = MessageHub.get_current_instance().get_info('iter')
        except Exception:  # noqa: BLE001 - outside a runner
            it = None
        if it is None:
            it = self._local_iter
            self._local_iter += 1
        return it

    def loss(self, inputs, data_samples):
        cfg = self.train_cfg
        crm, density = self.branch_maps(inputs, cfg['sub_pixel_locating_factor'])
        scores, peak_map, _ = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'],
                                               cfg['exact_grad'])
        counts = _image_field(data_samples, 'gt_image_counts', scores.device)
        if self._current_iter() < cfg['stage1_iters']:
            return stage1_loss(scores, density, counts, cfg['stage1_subitizing'],
                               cfg['rank_weight'])
        peaks = top_count_peak_mask(crm, peak_map, counts)
        absent = sample_absent_classes(counts, cfg['rare_fraction'], cfg['neg_prob'])
        return stage2_loss(scores, density, counts, peaks, absent, cfg['stage2_subitizing'],
                           cfg['rank_weight'])

    def _retrieval_extra(self, density, labels, proposals):
        dh, dw = density.shape[-2:]
        small = F.interpolate(proposals[:, None].float(), size=(dh, dw),
                              mode='nearest-exact')[:, 0] > 0.5
        return dict(density=density[labels], density_factor=self.test_cfg['density_factor'],
                    density_proposals=small, density_norm=self.test_cfg['density_norm'])

    def predict_counts(self, inputs):
        """Image-level counts (B, K), the release's counting inference."""
        with torch.no_grad():
            crm, density = self.branch_maps(inputs, self.test_cfg['sub_pixel_locating_factor'])
            scores, _, _ = peak_stimulation(crm, self.test_cfg['win_size'],
                                            self.test_cfg['filter_type'])
        return count_prediction(scores, density)
