"""One training step of recurrent attention, shared by the mmdet and detectron2 adapters.

Shapes: B images, T the timespan, M_b GT instances of image b (at most T are used), H x W the
fixed model input.

The release's schedule (``run_cvppp.sh`` / ``full_model.py``): (1) the box network is pretrained
alone (``stage='box'``, ``box_model_train.py``: the canvas is always fed the greedily matched
GT); (2) the full network is trained from those weights with the "knob": at step ``t`` of the
sequence the GT box / the GT mask is fed instead of the prediction with probability
:func:`~.loss.knob_probability` (CVPPP: decay 0.5 every 700 iterations, box offset -50000, i.e.
never, segmentation offset 3000, time-scaled).
"""
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from .attention import gt_boxes_from_masks
from .loss import knob_probability, recurrent_attention_losses

#: the release's CVPPP knob settings (run_cvppp.sh)
DEFAULT_KNOB = dict(use_knob=True, base=1.0, decay=0.5, steps_per_decay=700, box_offset=-50000,
                    segm_offset=3000, use_timescale=True)


def sample_knobs(step: float, batch: int, timespan: int, knob: Optional[Dict] = None,
                 device=None):
    """Random GT-feeding decisions of one batch.

    Args:
        step: training iteration. batch: B. timespan: T.
        knob: ``use_knob``, ``base``, ``decay``, ``steps_per_decay``, ``box_offset``,
            ``segm_offset``, ``use_timescale`` (missing keys from :data:`DEFAULT_KNOB`).

    Returns:
        (knob_box, knob_segm): (B, T) float {0, 1}.
    """
    cfg = dict(DEFAULT_KNOB, **(knob or {}))
    if not cfg['use_knob']:
        zeros = torch.zeros(batch, timespan, device=device)
        return zeros, zeros.clone()
    out = []
    for offset in (cfg['box_offset'], cfg['segm_offset']):
        p = knob_probability(step, timespan, cfg['base'], cfg['decay'], cfg['steps_per_decay'],
                             offset, cfg['use_timescale']).to(device)
        out.append((torch.rand(batch, timespan, device=device) <= p).float())
    return out[0], out[1]


def pad_instances(masks: Sequence[Tensor], timespan: int, size: Sequence[int]) -> Tensor:
    """(B, M, H, W) zero-padded stack of each image's first ``timespan`` masks, M = max M_b."""
    m = max([min(x.shape[0], timespan) for x in masks] + [1])
    out = torch.zeros(len(masks), m, int(size[0]), int(size[1]),
                      device=masks[0].device if len(masks) else None)
    for b, x in enumerate(masks):
        k = min(x.shape[0], timespan)
        out[b, :k] = x[:k].float()
    return out


def training_losses(net, images: Tensor, gt_masks: Sequence[Tensor],
                    gt_labels: Sequence[Tensor], step: float, knob: Optional[Dict] = None,
                    extra: Optional[Tensor] = None, loss_weights: Optional[Dict] = None
                    ) -> Dict[str, Tensor]:
    """Forward with GT feeding and all losses.

    Args:
        net: :class:`~.network.RecurrentAttentionNet` (its ``stage`` selects the losses).
        images: (B, C, H, W) at the model input size.
        gt_masks: B tensors (M_b, H, W) binary at the input size. gt_labels: B (M_b,).
        step: training iteration (for the knob schedule). knob: see :func:`sample_knobs`.
        extra: optional extra input maps. loss_weights: ``box``, ``segm``, ``score``, ``cls``.

    Returns:
        dict of scalar losses.
    """
    t = net.timespan
    gt_masks = [m[:t].float() for m in gt_masks]
    gt_labels = [lab[:t] for lab in gt_labels]
    padded = pad_instances(gt_masks, t, images.shape[-2:]).to(images.device)
    knob_box, knob_segm = sample_knobs(step, images.shape[0], t, knob, images.device)
    if net.stage == 'box':  # the box model always feeds the matched GT into the canvas
        knob_segm = torch.ones_like(knob_segm)
    outputs = net(images, extra, net.make_teacher(padded, knob_box, knob_segm))
    _, _, boxes = gt_boxes_from_masks(padded, net.box_padding_ratio, 0.0, net.min_box_padding)
    gt_boxes = [boxes[b, :m.shape[0]] for b, m in enumerate(gt_masks)]
    w = dict(dict(box=1.0, segm=1.0, score=1.0, cls=1.0), **(loss_weights or {}))
    return recurrent_attention_losses(outputs, gt_masks, gt_boxes, gt_labels, net.stage,
                                      w['box'], w['segm'], w['score'], w['cls'])
