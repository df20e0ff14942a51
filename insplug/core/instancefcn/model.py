"""InstanceFCN batch wiring shared by the framework adapters: pyramid resizing, per-image
targets, the training loss of a batch and the proposals of a batch; optionally the segment
classifier (:mod:`.classifier`, "segments, then classified").

Shapes: B images, (Hp, Wp) the padded normalised batch; at scale s the network input is
(round(s Hp), round(s Wp)) and its feature map (h, w) with C channels; N_b objects of image b;
K classes.

``forward`` maps normalised images to ``(inst (B, k*k, h, w), obj (B, h, w))``; with a
classifier it must return ``(inst, obj, feat (B, C, h, w))`` (the trunk's features the
classifier pools from).
"""
import random
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .classifier import (DEFAULT_CLS_TEST_CFG, DEFAULT_CLS_TRAIN_CFG, SegmentClassifier,
                         classifier_loss, classifier_targets, classify_segments,
                         sample_segments, segment_mask_inputs)
from .inference import propose
from .loss import instancefcn_loss
from .targets import CENTER_SHIFT, OBJ_RATIO, SCALE_TOLERANCE, cell_masks, window_assignment

# the paper's settings (Sec. 4): image pyramid 1.5^{-4..1} about a 600-px shorter side; 256
# windows per image, positives : negatives = 1 : 1
DEFAULT_TRAIN_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), num_samples=256,
                         pos_fraction=0.5, mask_weight=1.0, obj_ratio=OBJ_RATIO,
                         center_shift=CENTER_SHIFT, scale_tolerance=SCALE_TOLERANCE)
DEFAULT_TEST_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), pre_nms=1000,
                        mask_thr=0.5, nms_iou=0.8, max_per_img=1000)

Forward = Callable[[Tensor], Tuple[Tensor, ...]]


def resize_batch(images: Tensor, scale: float) -> Tensor:
    """(B, C, Hp, Wp) -> (B, C, round(s Hp), round(s Wp)), bilinear (half-pixel centres)."""
    if scale == 1.0:
        return images
    hp, wp = images.shape[-2:]
    size = (max(1, int(round(hp * scale))), max(1, int(round(wp * scale))))
    return F.interpolate(images, size, mode='bilinear', align_corners=False)


def batch_loss(forward: Forward, images: Tensor, boxes: List[Tensor], masks: List[Tensor],
               stride: int, window: int, cfg: dict, labels: Optional[List[Tensor]] = None,
               classifier: Optional[SegmentClassifier] = None,
               cls_cfg: Optional[dict] = None) -> dict:
    """Training loss of a batch at one random pyramid scale (Python's ``random``).

    Args:
        forward: normalised images -> (inst (B, k*k, h, w), obj (B, h, w)[, feat]).
        images: (B, C, Hp, Wp). boxes: B tensors (N_b, 4). masks: B tensors (N_b, Hp, Wp).
        stride: S. window: m. cfg: keys of ``DEFAULT_TRAIN_CFG``.
        labels: B tensors (N_b,) in [0, K) (with a classifier).
        classifier: optional :class:`~.classifier.SegmentClassifier`.
        cls_cfg: keys of ``DEFAULT_CLS_TRAIN_CFG``.

    Returns:
        dict(loss_objectness, loss_segment[, loss_seg_cls]); without
        ``cls_cfg['train_proposals']`` only ``loss_seg_cls`` (with ``detach_features``: the
        paper's second training step, the trunk runs without autograd).
    """
    cfg = dict(DEFAULT_TRAIN_CFG, **cfg)
    scale = float(random.choice(list(cfg['scales'])))
    x = resize_batch(images, scale)
    ccfg = dict(DEFAULT_CLS_TRAIN_CFG, **(cls_cfg or {}))
    frozen = classifier is not None and ccfg['detach_features'] and not ccfg['train_proposals']
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        out = forward(x)
    inst, obj = out[0], out[1]
    h, w = obj.shape[-2:]
    assignments, cells, scaled = [], [], []
    for b, m in zip(boxes, masks):  # per image targets
        m = m.float()
        if m.shape[0]:
            m = F.interpolate(m[:, None], x.shape[-2:], mode='bilinear',
                              align_corners=False)[:, 0]
        else:
            m = m.new_zeros((0,) + tuple(x.shape[-2:]))
        assignments.append(window_assignment(b.float() * scale, h, w, stride, window,
                                             cfg['obj_ratio'], cfg['center_shift'],
                                             cfg['scale_tolerance']))
        cells.append(cell_masks(m >= 0.5, stride, h, w))
        scaled.append((b.float() * scale, m >= 0.5))
    if classifier is None:
        return instancefcn_loss(inst, obj, assignments, cells, window, cfg['num_samples'],
                                cfg['pos_fraction'], cfg['mask_weight'])
    feat = out[2].detach() if ccfg['detach_features'] else out[2]
    if not ccfg['train_proposals']:  # e.g. the second training step
        losses = {}
    else:
        losses = instancefcn_loss(inst, obj, assignments, cells, window, cfg['num_samples'],
                                  cfg['pos_fraction'], cfg['mask_weight'])
    losses.update(classifier_batch_loss(classifier, feat, inst.detach(), obj.detach(),
                                        scaled, labels, tuple(x.shape[-2:]), stride, window,
                                        cfg, ccfg))
    return losses


def classifier_batch_loss(classifier: SegmentClassifier, feat: Tensor, inst: Tensor,
                          obj: Tensor, gts: Sequence[Tuple[Tensor, Tensor]],
                          labels: Sequence[Tensor], size: Tuple[int, int], stride: int,
                          window: int, cfg: dict, ccfg: dict) -> dict:
    """The classifier's loss on the batch's own proposals at the training scale.

    Args:
        classifier: the module. feat: (B, C, h, w). inst: (B, k*k, h, w). obj: (B, h, w)
            (detached: proposals are inputs of the classifier).
        gts: B tuples (boxes (N_b, 4), masks (N_b, Hs, Ws) bool) at that scale.
        labels: B tensors (N_b,). size: (Hs, Ws) the scaled input. stride: S. window: m.
        cfg: the proposal settings (``DEFAULT_TRAIN_CFG``; mask threshold / NMS from
            ``DEFAULT_TEST_CFG``). ccfg: ``DEFAULT_CLS_TRAIN_CFG`` keys (``pre_nms``: windows
            assembled per image, ``None``: ``DEFAULT_TEST_CFG``'s).

    Returns:
        dict(loss_seg_cls).
    """
    tcfg = DEFAULT_TEST_CFG
    pre_nms = ccfg['pre_nms'] if ccfg.get('pre_nms') else tcfg['pre_nms']
    rois, mask_inputs, targets = [], [], []
    for i, ((gb, gm), gl) in enumerate(zip(gts, labels)):  # per image, not per instance
        with torch.no_grad():
            pm, _, pb = propose([(inst[i], obj[i], 1.0)], window, stride, size[0], size[1],
                                pre_nms, tcfg['mask_thr'], tcfg['nms_iou'],
                                ccfg['num_proposals'])
        if ccfg['add_gt'] and gb.shape[0]:
            pm, pb = torch.cat([gm, pm]), torch.cat([gb.to(pb), pb])
        det, lab = classifier_targets(pb, pm, gb, gm, gl, classifier.num_classes,
                                      ccfg['fg_det_thr'], ccfg['fg_seg_thr'])
        idx = sample_segments(det, ccfg['rois_per_img'], ccfg['fractions'], ccfg['thr_lo'],
                              ccfg['thr_hi'])
        rois.append(torch.cat([pb.new_full((idx.numel(), 1), float(i)), pb[idx]], 1))
        mask_inputs.append(segment_mask_inputs(pm[idx], pb[idx], classifier.mask_size,
                                               classifier.binarize_thr))
        targets.append(lab[idx])
    logits = classifier(feat, torch.cat(rois), torch.cat(mask_inputs), 1.0 / stride)
    return classifier_loss(logits, torch.cat(targets), ccfg['loss_weight'])


def batch_proposals(forward: Forward, images: Tensor, out_sizes: Sequence[Tuple[int, int]],
                    box_scales: Sequence[float], stride: int, window: int, cfg: dict,
                    classifier: Optional[SegmentClassifier] = None,
                    cls_cfg: Optional[dict] = None) -> List[Tuple[Tensor, ...]]:
    """Proposals of every image of a batch, or, with a classifier, its classified segments.

    Args:
        forward, images, stride, window: as :func:`batch_loss`.
        out_sizes: B (H, W) output mask sizes. box_scales: B output pixels per input pixel.
        cfg: keys of ``DEFAULT_TEST_CFG``.
        classifier: optional :class:`~.classifier.SegmentClassifier`; the best
            ``cls_cfg['num_proposals']`` proposals of each image are classified on the
            features of the pyramid scale ``cls_cfg['scale']``.
        cls_cfg: keys of ``DEFAULT_CLS_TEST_CFG``.

    Returns:
        B tuples (masks (K, H, W) bool, scores (K,), boxes (K, 4)); with a classifier B tuples
        (masks (D, H, W), scores (D,), boxes (D, 4), labels (D,) in [0, K)).
    """
    cfg = dict(DEFAULT_TEST_CFG, **cfg)
    ccfg = dict(DEFAULT_CLS_TEST_CFG, **(cls_cfg or {}))
    wp = images.shape[-1]
    levels, feat = [], None
    for s in cfg['scales']:  # a fixed, small number of pyramid levels
        x = resize_batch(images, float(s))
        out = forward(x)
        levels.append((out[0], out[1], x.shape[-1] / wp))  # the level's actual resize factor
        if classifier is not None and float(s) == float(ccfg['scale']):
            feat = (out[2], x.shape[-1] / wp)
    if classifier is not None and feat is None:
        x = resize_batch(images, float(ccfg['scale']))
        feat = (forward(x)[2], x.shape[-1] / wp)
    keep = ccfg['num_proposals'] if classifier is not None else cfg['max_per_img']
    props = []
    for i, ((height, width), bs) in enumerate(zip(out_sizes, box_scales)):
        props.append(propose([(inst[i], obj[i], s) for inst, obj, s in levels], window,
                             stride, height, width, cfg['pre_nms'], cfg['mask_thr'],
                             cfg['nms_iou'], keep, bs))
    if classifier is None:
        return props
    return classify_batch(classifier, feat[0], feat[1], props, box_scales, stride, ccfg)


def classify_batch(classifier: SegmentClassifier, feat: Tensor, level_scale: float,
                   props: Sequence[Tuple[Tensor, Tensor, Tensor]], box_scales: Sequence[float],
                   stride: int, ccfg: dict) -> List[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Classify every image's proposals in one classifier call.

    Args:
        feat: (B, C, h, w) features of the input resized by ``level_scale``.
        props: B tuples (masks (R_b, H, W), scores (R_b,), boxes (R_b, 4) output pixels).
        box_scales: B output pixels per network-input pixel. stride: S.
        ccfg: ``DEFAULT_CLS_TEST_CFG`` keys.

    Returns:
        B tuples (masks (D, H, W), scores (D,), boxes (D, 4), labels (D,)).
    """
    rois, mask_inputs = [], []
    for i, ((masks, _, boxes), bs) in enumerate(zip(props, box_scales)):
        rois.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(i)),
                               boxes * (level_scale / bs)], 1))
        mask_inputs.append(segment_mask_inputs(masks, boxes, classifier.mask_size,
                                               classifier.binarize_thr))
    probs = torch.softmax(classifier(feat, torch.cat(rois), torch.cat(mask_inputs),
                                     1.0 / stride), 1).split([p[0].shape[0] for p in props])
    out = []
    for (masks, _, boxes), p in zip(props, probs):
        seg, scores, labels = classify_segments(p, boxes, ccfg['score_thr'], ccfg['nms_iou'],
                                                ccfg['max_per_class'], ccfg['max_per_img'])
        out.append((masks[seg], scores, boxes[seg], labels))
    return out
