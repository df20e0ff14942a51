"""InstanceFCN's "segments, then classified": the segment classifier of MNC's third stage
(Dai, He, Sun, CVPR 2016), fed with InstanceFCN's class-agnostic segment proposals.

Shapes: B images; C feature channels on a stride-S map (h, w); R segments (class-agnostic
proposals) of one image or of a batch; masks (R, H, W) bool at the resolution of the image
their boxes are given in; N ground-truth objects; K object classes, label K = background
(mmdet's convention; MNC's label 0 = background); P = ``roi_size`` (7), M = ``mask_size`` (14).

Paper (InstanceFCN, Sec. 5, instance semantic segmentation on PASCAL VOC): the classifier is
MNC's stage 3 applied to InstanceFCN's N = 300 proposals, trained in two steps (first the
proposals, then the classifier on them), not jointly. Read from MNC's release
(daijifeng001/MNC, the CFM mode that classifies given segment proposals:
``models/VGG16/cfm/train.prototxt``, ``lib/pylayer/cfm_data_layer.py``,
``lib/caffeWrapper/TesterWrapper.py``, ``lib/mnc_config.py``):

* box pathway: RoI max pooling 7 x 7 of the segment's box -> fc6 -> ReLU -> fc7 -> ReLU (4096);
* mask pathway ("MaskPooling"): RoI max pooling 14 x 14 of the box, multiplied by the segment's
  mask cropped to its box, resized to 14 x 14 (bilinear) and binarised at 0.4, then 2 x 2 max
  pooling -> fc6_mask -> ReLU -> fc7_mask -> ReLU (4096, own weights);
* ``seg_cls_score``: one linear layer on concat(mask features, box features) -> K + 1 logits,
  softmax cross-entropy;
* training targets: a segment's box IoU with the ground-truth boxes assigns it to one object
  (the best); its label is that object's class when the box IoU >= 0.5 AND the mask IoU with
  that object >= 0.5, else background; 64 segments per image are sampled by box IoU: 30 % in
  [0.5, 1], 50 % in [0.1, 0.5], 20 % in [0, 0.1] (at most what there is; the ground truth is
  among the candidates);
* inference: the class scores are the softmax probabilities (the proposal's objectness is not
  multiplied in); per class the best 100, box NMS at IoU 0.3.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_pool

from insplug.core.postprocess.nms import box_iou_matrix, box_nms, group_top_k, mask_iou_matrix

# MNC's CFM mode (lib/mnc_config.py): 64 RoIs per image, fractions / box-IoU ranges of
# TRAIN.FRACTION_SAMPLE / THRESH_LO_SAMPLE / THRESH_HI_SAMPLE, FG_DET_THRESH, FG_SEG_THRESH;
# the InstanceFCN paper classifies N = 300 proposals (``pre_nms``: windows assembled per
# image before NMS, None: the proposals' test setting); ``add_gt``: the ground-truth segments
# are candidates (MNC's CFM roidb lists them first); ``detach_features``: the classifier's loss
# does not reach the trunk; ``train_proposals``: the proposal losses are computed (False with
# ``detach_features``: the second step of the paper's two-step training, trunk and proposal
# branches frozen).
DEFAULT_CLS_TRAIN_CFG = dict(num_proposals=300, rois_per_img=64, fractions=(0.3, 0.5, 0.2),
                             thr_lo=(0.5, 0.1, 0.0), thr_hi=(1.0, 0.5, 0.1), fg_det_thr=0.5,
                             fg_seg_thr=0.5, add_gt=True, loss_weight=1.0,
                             detach_features=False, train_proposals=True, pre_nms=None)
# TEST.NMS 0.3 (box NMS per class), at most 100 per class (the tester's max_per_image);
# ``scale``: the pyramid scale whose features are classified (MNC tests at one scale)
DEFAULT_CLS_TEST_CFG = dict(num_proposals=300, scale=1.0, score_thr=0.0, nms_iou=0.3,
                            max_per_class=100, max_per_img=100)


class SegmentClassifier(nn.Module):
    """MNC stage-3 classifier of segments (box pathway + masked pathway, K + 1 logits).

    Args:
        in_channels: C.
        num_classes: K (background is the extra logit K).
        fc_channels: width of fc6 / fc7 of each pathway (4096).
        roi_size: P (7). mask_size: M (14 = 2 P).
        binarize_thr: threshold of the resized segment masks (0.4).
        reduce_channels: optional 1x1 conv + ReLU to this width before the pooling (not in
            MNC, whose VGG-16 conv5_3 has 512 channels: a 2048-channel ResNet stand-in would
            make fc6 four times VGG's; None: pool the trunk feature as it is).
    """

    def __init__(self, in_channels: int, num_classes: int, fc_channels: int = 4096,
                 roi_size: int = 7, mask_size: int = 14, binarize_thr: float = 0.4,
                 reduce_channels: Optional[int] = None):
        super().__init__()
        if mask_size != 2 * roi_size:
            raise ValueError('mask_size must be 2 * roi_size (a 2 x 2 max pooling follows)')
        self.num_classes, self.roi_size, self.mask_size = num_classes, roi_size, mask_size
        self.binarize_thr = binarize_thr
        self.reduce = None
        if reduce_channels is not None:
            self.reduce = nn.Conv2d(in_channels, reduce_channels, 1)
            in_channels = reduce_channels
        flat = in_channels * roi_size * roi_size
        self.fc6 = nn.Linear(flat, fc_channels)
        self.fc7 = nn.Linear(fc_channels, fc_channels)
        self.fc6_mask = nn.Linear(flat, fc_channels)
        self.fc7_mask = nn.Linear(fc_channels, fc_channels)
        self.seg_cls_score = nn.Linear(2 * fc_channels, num_classes + 1)
        # fc6 / fc7 (both pathways): MNC starts them from ImageNet VGG-16; here PyTorch's
        # default initialisation (trained from scratch or fine-tuned from a checkpoint)
        nn.init.normal_(self.seg_cls_score.weight, std=0.01)  # gaussian 0.01 (prototxt)
        nn.init.zeros_(self.seg_cls_score.bias)

    def forward(self, feat: Tensor, rois: Tensor, mask_inputs: Tensor,
                spatial_scale: float) -> Tensor:
        """feat (B, C, h, w); rois (R, 5) batch index, x1, y1, x2, y2 in input pixels;
        mask_inputs (R, M, M) {0, 1} (:func:`segment_mask_inputs`); spatial_scale 1 / S
        -> logits (R, K + 1)."""
        p, m = self.roi_size, self.mask_size
        if self.reduce is not None:
            feat = F.relu(self.reduce(feat))
        box = roi_pool(feat, rois.to(feat), p, spatial_scale)
        masked = roi_pool(feat, rois.to(feat), m, spatial_scale) * mask_inputs[:, None].to(feat)
        masked = F.max_pool2d(masked, 2, 2)
        fb = F.relu(self.fc7(F.relu(self.fc6(box.flatten(1)))))
        fm = F.relu(self.fc7_mask(F.relu(self.fc6_mask(masked.flatten(1)))))
        return self.seg_cls_score(torch.cat([fm, fb], 1))


def segment_mask_inputs(masks: Tensor, boxes: Tensor, size: int = 14,
                        threshold: float = 0.4) -> Tensor:
    """Each segment's mask cropped to its box, resized to size x size and binarised.

    Args:
        masks: (R, H, W) bool / {0, 1}.
        boxes: (R, 4) x1, y1, x2, y2 (x2, y2 exclusive) in the masks' pixels.
        size: M. threshold: binarisation (MNC's BINARIZE_THRESH 0.4).

    Returns:
        (R, M, M) float {0, 1}: ``cv2.resize`` (bilinear) of the box's crop, as MNC: output
        cell j samples crop coordinate (j + 0.5) * w / M - 0.5, clamped to the crop (its border
        pixels replicate); one batched ``grid_sample`` over the full masks.
    """
    r, h, w = masks.shape
    if r == 0:
        return masks.new_zeros((0, size, size), dtype=torch.float32)
    b = boxes.float()
    cell = torch.arange(size, device=masks.device, dtype=torch.float32) + 0.5

    def coords(lo, hi):  # (R,) crop start / end -> (R, M) pixel coordinates in the crop
        c = lo[:, None] + cell[None] * (hi - lo)[:, None] / size - 0.5
        return torch.minimum(torch.maximum(c, lo[:, None]), (hi - 1)[:, None])

    gx = coords(b[:, 0], b[:, 2]) / max(w - 1, 1) * 2 - 1
    gy = coords(b[:, 1], b[:, 3]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(r, size, size),
                        gy[:, :, None].expand(r, size, size)], -1)
    out = F.grid_sample(masks[:, None].float(), grid, mode='bilinear', padding_mode='border',
                        align_corners=True)[:, 0]
    return (out >= threshold).float()


def classifier_targets(boxes: Tensor, masks: Tensor, gt_boxes: Tensor, gt_masks: Tensor,
                       gt_labels: Tensor, num_classes: int, fg_det_thr: float = 0.5,
                       fg_seg_thr: float = 0.5) -> Tuple[Tensor, Tensor]:
    """Labels of the segments of one image.

    Args:
        boxes: (R, 4). masks: (R, H, W) bool.
        gt_boxes: (N, 4). gt_masks: (N, H, W) bool. gt_labels: (N,) in [0, K).
        num_classes: K. fg_det_thr: box IoU for a foreground box. fg_seg_thr: mask IoU with
            the assigned object for a foreground segment.

    Returns:
        det_overlap (R,) the best box IoU (0 without objects); labels (R,) int64 in [0, K],
        K = background.
    """
    r = boxes.shape[0]
    labels = torch.full((r,), num_classes, dtype=torch.long, device=boxes.device)
    if gt_boxes.shape[0] == 0 or r == 0:
        return boxes.new_zeros(r), labels
    det, assign = box_iou_matrix(boxes.float(), gt_boxes.float()).max(1)  # first best on ties
    seg = mask_iou_matrix(masks.flatten(1), gt_masks.flatten(1)).gather(1, assign[:, None])[:, 0]
    fg = (det >= fg_det_thr) & (seg >= fg_seg_thr)
    labels = torch.where(fg, gt_labels.long()[assign], labels)
    return det, labels


def sample_segments(det_overlap: Tensor, num: int = 64,
                    fractions: Sequence[float] = (0.3, 0.5, 0.2),
                    thr_lo: Sequence[float] = (0.5, 0.1, 0.0),
                    thr_hi: Sequence[float] = (1.0, 0.5, 0.1),
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """MNC's CFM sampling of one image's segments by box IoU.

    Args:
        det_overlap: (R,) best box IoU of each segment.
        num: segments per image (64). fractions, thr_lo, thr_hi: per IoU range
            [thr_lo, thr_hi] (closed), at most ``round(num * fraction)`` drawn without
            replacement.

    Returns:
        (T,) int64 distinct indices into R (T <= num + ranges' overlaps removed), sorted.
    """
    picks = []
    for frac, lo, hi in zip(fractions, thr_lo, thr_hi):
        cand = torch.nonzero((det_overlap >= lo) & (det_overlap <= hi))[:, 0]
        n = min(int(round(num * frac)), cand.numel())
        perm = torch.randperm(cand.numel(), generator=generator)[:n].to(cand.device)
        picks.append(cand[perm])
    return torch.unique(torch.cat(picks))


def classify_segments(probs: Tensor, boxes: Tensor, score_thr: float = 0.0,
                      nms_iou: float = 0.3, max_per_class: int = 100, max_per_img: int = 100
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """Class-aware detections of one image's classified segments.

    Args:
        probs: (R, K + 1) softmax probabilities (last column background).
        boxes: (R, 4) the segments' boxes.
        score_thr: keep (segment, class) pairs scoring above it.
        nms_iou: per-class box NMS threshold (0.3). max_per_class: best pairs per class before
            NMS (100). max_per_img: kept in all (<= 0: all).

    Returns:
        segment index (D,) int64 into R, scores (D,), labels (D,) int64 in [0, K), by
        decreasing score.
    """
    k = probs.shape[1] - 1
    scores = probs[:, :k].flatten()
    seg = torch.arange(probs.shape[0], device=probs.device).repeat_interleave(k)
    cls = torch.arange(k, device=probs.device).repeat(probs.shape[0])
    ok = torch.nonzero(scores > score_thr)[:, 0]
    if ok.numel() == 0:
        empty = seg.new_zeros(0)
        return empty, scores.new_zeros(0), empty
    table = group_top_k(scores[ok], cls[ok], max_per_class)
    sel = ok[table[table >= 0]]
    keep, kept_scores = box_nms(scores[sel], cls[sel], boxes[seg[sel]], iou_thr=nms_iou,
                                max_num=max_per_img)
    sel = sel[keep]
    return seg[sel], kept_scores, cls[sel]


def classifier_loss(logits: Tensor, labels: Tensor, loss_weight: float = 1.0
                    ) -> Dict[str, Tensor]:
    """Softmax cross-entropy (mean over the T sampled segments of the batch).

    Args:
        logits: (T, K + 1). labels: (T,) in [0, K].

    Returns:
        dict(loss_seg_cls) scalar.
    """
    if logits.shape[0] == 0:
        return dict(loss_seg_cls=logits.sum() * 0)
    return dict(loss_seg_cls=loss_weight * F.cross_entropy(logits, labels))
