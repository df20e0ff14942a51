"""PRM / CountSeg model wiring shared by the mmdet and detectron2 adapters (framework-free).

Shapes: B images, input (B, 3, H, W); K classes; trunk output (B, C, h, w); class response
maps (crm) and density maps (B, K, h', w') with h' = h * sub-pixel factor; per image N peaks
(rows ``(b, k, y, x)``), Q proposals (Q, H, W) bool on the input grid.

``PRMMaps`` / ``CountSegMaps`` are mixins for an ``nn.Module`` that provides
``extract_feat(inputs) -> (B, C, h, w)`` and ``train_cfg`` / ``test_cfg`` dicts (defaults
below) and ``num_classes``; they build the 1x1 heads (``classifier``; CountSeg adds
``cls_branch`` / ``density_branch``: the release's key layout), compute the maps, the
image-level losses and the per-image instance retrieval. The maths is in
``insplug.core.prm`` / ``insplug.core.countseg``.
"""
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from insplug.core.countseg import (count_prediction, sample_absent_classes, stage1_loss,
                                   stage2_loss, top_count_peak_mask)

from .backprop import peak_backprop_mode, peak_response_maps
from .inference import retrieve_instances, select_inference_peaks
from .peaks import peak_stimulation, peak_values
from .scoring import release_resize

PRM_TRAIN_CFG = dict(win_size=3, sub_pixel_locating_factor=8, filter_type='median',
                     exact_grad=False)
# the release's demo: model built with the constructor defaults (sub-pixel factor 1) and
# retrieval_cfg=dict(proposals=..., param=(0.95, 1e-5, 0.8)); forward defaults
PRM_TEST_CFG = dict(win_size=3, sub_pixel_locating_factor=1, filter_type='median',
                    class_threshold=0.0, peak_threshold=30.0, peak_rule='prm', bg_factor=0.95,
                    penalty=1e-5, balance=0.8, contour_width=5, size_limits=(0.00002, 0.85),
                    proposal_count=100, nms_thr=0.3, chunk=16, max_per_img=100, max_peaks=None)
COUNTSEG_TRAIN_CFG = dict(win_size=3, sub_pixel_locating_factor=1, filter_type='median',
                          exact_grad=False, stage1_iters=0, stage1_subitizing=5,
                          stage2_subitizing=5, rank_weight=0.1, rare_fraction=0.2,
                          neg_prob=1.1)
# the release's demo-pascal: model(input, 1, peak_threshold=20, retrieval_cfg=dict(
# proposal_count=100, param=(0.95, 1e-5, 0.8, 0.2))) with forward's class_threshold=0.5
COUNTSEG_TEST_CFG = dict(PRM_TEST_CFG, class_threshold=0.5, peak_threshold=20.0,
                         peak_rule='countseg', density_factor=0.2, density_norm=None)


def upsample_maps(maps, factor):
    """(B, K, h, w) -> (B, K, h * factor, w * factor), bilinear with aligned corners (release)."""
    if factor > 1:
        maps = F.interpolate(maps, scale_factor=factor, mode='bilinear', align_corners=True)
    return maps


def rescale_masks(masks, size):
    """(Q, h, w) bool -> (Q, *size) bool (bilinear, > 0.5); empty stays empty."""
    if not masks.shape[0]:
        return masks.new_zeros((0,) + tuple(size), dtype=torch.bool)
    return F.interpolate(masks[:, None].float(), size=tuple(size), mode='bilinear',
                         align_corners=False)[:, 0] > 0.5


class PRMMaps:
    """PRM wiring (see the module docstring)."""

    def _build_heads(self, in_channels):
        self.classifier = nn.Conv2d(in_channels, self.num_classes, 1)

    @staticmethod
    def _upsample(maps, factor):
        return upsample_maps(maps, factor)

    def class_maps(self, inputs, factor=1):
        """(B, 3, H, W) -> class response maps (B, K, h*factor, w*factor)."""
        return upsample_maps(self.classifier(self.extract_feat(inputs)), factor)

    def _test_maps(self, inputs):
        """Class maps for peaks, and density maps (None for PRM)."""
        return self.class_maps(inputs, self.test_cfg['sub_pixel_locating_factor']), None

    def _retrieval_extra(self, density, labels, proposals):
        return {}

    def image_level_loss(self, inputs, labels):
        """Peak stimulation + multi-label soft margin. labels: (B, K) multi-hot."""
        cfg = self.train_cfg
        crm = self.class_maps(inputs, cfg['sub_pixel_locating_factor'])
        scores, _, _ = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'],
                                        cfg['exact_grad'])
        return dict(loss_cls=F.multilabel_soft_margin_loss(scores, labels.to(scores)))

    def predict_instances(self, inputs, img_shapes: Sequence[Tuple[int, int]],
                          proposals_fn: Callable[[int], torch.Tensor]) -> List[tuple]:
        """Instances of each image: peaks -> peak response maps -> proposal retrieval.

        Args:
            inputs: (B, 3, H, W) network input.
            img_shapes: (h_i, w_i) unpadded size of each image on the input grid.
            proposals_fn: image index -> (Q, H, W) bool proposals on the input grid.

        Returns:
            per image ``(masks (M, h_i, w_i) bool, labels (M,), scores (M,))``.
        """
        cfg = self.test_cfg
        was_training = self.training
        self.eval()
        with torch.no_grad():
            crm, density = self._test_maps(inputs)
            scores, _, peak_list = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'])
        results = []
        for i in range(inputs.shape[0]):
            peaks = peak_list[peak_list[:, 0] == i]
            keep = select_inference_peaks(scores[i], peak_values(crm, peaks), peaks[:, 1],
                                          cfg['class_threshold'], cfg['peak_threshold'],
                                          cfg['peak_rule'])
            peaks = peaks[keep]
            if cfg['max_peaks'] is not None:  # insplug option (None: the release, all peaks)
                top = peak_values(crm, peaks).argsort(descending=True, stable=True)
                peaks = peaks[top[:cfg['max_peaks']].sort().values]
            masks, labels, sc = self._retrieve_one(
                inputs[i], crm[i], peaks, None if density is None else density[i],
                proposals_fn(i))
            h, w = img_shapes[i]
            results.append((masks[:, :h, :w], labels, sc))
        self.train(was_training)
        return results

    def _retrieve_one(self, image, crm, peaks, density, proposals):
        cfg = self.test_cfg
        h, w = image.shape[-2:]
        labels = peaks[:, 1]
        with peak_backprop_mode(self):
            prms = peak_response_maps(lambda x: self._test_maps(x)[0], image, peaks,
                                      cfg['chunk'])
        classes, inverse = labels.unique(return_inverse=True)
        class_maps_up = release_resize(crm[classes], (h, w))[inverse].to(image.device)
        proposals = proposals[:cfg['proposal_count']]
        extra = self._retrieval_extra(density, labels, proposals)
        masks, labels, scores = retrieve_instances(
            prms.double(), labels, class_maps_up, proposals, bg_factor=cfg['bg_factor'],
            penalty=cfg['penalty'], balance=cfg['balance'], contour_width=cfg['contour_width'],
            size_limits=cfg['size_limits'], nms_thr=cfg['nms_thr'], **extra)
        n = cfg['max_per_img']
        return masks[:n], labels[:n], scores[:n]


class CountSegMaps(PRMMaps):
    """CountSeg wiring: ``fc_channels`` (``self._fc_channels``, default 3 K) split in two halves,
    each through BN-ReLU-1x1 conv to K maps (classification, density)."""

    def _build_heads(self, in_channels):
        fc = getattr(self, '_fc_channels', None) or 3 * self.num_classes
        self.classifier = nn.Conv2d(in_channels, fc, 1)

        def branch():
            return nn.Sequential(nn.BatchNorm2d(fc // 2), nn.ReLU(inplace=True),
                                 nn.Conv2d(fc // 2, self.num_classes, 1))
        self.cls_branch = branch()
        self.density_branch = branch()

    def branch_maps(self, inputs, factor=1):
        """(B, 3, H, W) -> classification maps (B, K, h', w'), density maps (B, K, h', w')."""
        x = upsample_maps(self.classifier(self.extract_feat(inputs)), factor)
        a, b = x.chunk(2, 1)
        return self.cls_branch(a.contiguous()), self.density_branch(b.contiguous())

    def class_maps(self, inputs, factor=1):
        return self.branch_maps(inputs, factor)[0]

    def _test_maps(self, inputs):
        return self.branch_maps(inputs, self.test_cfg['sub_pixel_locating_factor'])

    def image_level_loss(self, inputs, counts, iteration=0):
        """Stage-1 loss before ``stage1_iters`` iterations, stage 2 after. counts: (B, K)."""
        cfg = self.train_cfg
        crm, density = self.branch_maps(inputs, cfg['sub_pixel_locating_factor'])
        scores, peak_map, _ = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'],
                                               cfg['exact_grad'])
        counts = counts.to(scores.device)
        if iteration < cfg['stage1_iters']:
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
