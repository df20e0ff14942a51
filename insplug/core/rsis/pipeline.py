"""RSIS training and inference on a batch, framework-free (the mmdet head and the detectron2
meta-architecture only convert their ground truth and image metadata).

Shapes: B images, M_b GT instances of image b, (Hp, Wp) the padded batch input, (h_b, w_b)
image b's un-padded input size, (H_b, W_b) its output size, T steps, K foreground classes.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoder import RSISDecoder, rsis_decode, upsample_align
from .inference import rsis_postprocess
from .loss import rsis_losses, sequence_order, train_num_steps


def pad_masks(masks: Tensor, size: Sequence[int]) -> Tensor:
    """(M, h, w) -> (M, Hp, Wp) float, zero-padded at the bottom / right."""
    masks = masks.float()
    return F.pad(masks, (0, size[1] - masks.shape[-1], 0, size[0] - masks.shape[-2]))


def rsis_gt_sequences(masks: List[Tensor], labels: List[Tensor], size: Sequence[int],
                      max_gt: int) -> Tuple[List[Tensor], List[Tensor]]:
    """The release's GT sequences.

    Args:
        masks: B tensors (M_b, h_b, w_b) binary. labels: B tensors (M_b,) in 0..K-1.
        size: (Hp, Wp). max_gt: release ``gt_maxseqlen``.

    Returns:
        masks: B tensors (min(M_b, max_gt), Hp, Wp) float, area-descending (see
        :func:`sequence_order`); labels: B tensors in 1..K (0 is the end-of-sequence class).
    """
    out_masks, out_labels = [], []
    for m, lab in zip(masks, labels):
        m = pad_masks(m, size)
        order = sequence_order(m, max_gt)
        out_masks.append(m[order])
        out_labels.append(lab.long()[order] + 1)
    return out_masks, out_labels


def rsis_train_losses(decoder: RSISDecoder, skips: Sequence[Tensor], gt_masks: List[Tensor],
                      gt_labels: List[Tensor], max_steps: int, steps_limit: int = None,
                      max_gt: int = 20, weights: Dict[str, float] = None,
                      stop_balance_weight: float = 0.5, use_class_loss: bool = True,
                      use_stop_loss: bool = True) -> Dict[str, Tensor]:
    """Weighted RSIS losses of a batch.

    Args:
        decoder: :class:`RSISDecoder`. skips: the five projected levels.
        gt_masks, gt_labels: from :func:`rsis_gt_sequences`.
        max_steps: release ``maxseqlen``. steps_limit: the curriculum's limit (None: none).
        weights: ``mask`` / ``cls`` / ``stop`` (release 1.0, 0.1, 0.5).
        use_class_loss, use_stop_loss: the schedule's switches (off: weight 0).

    Returns:
        ``loss_mask``, ``loss_cls``, ``loss_stop``.
    """
    weights = dict(dict(mask=1.0, cls=0.1, stop=0.5), **(weights or {}))
    limit = max_steps if steps_limit is None else min(max_steps, steps_limit)
    steps = train_num_steps([len(m) for m in gt_masks], limit)
    size = gt_masks[0].shape[-2:]
    mask_logits, class_logits, stop_logits = rsis_decode(decoder, skips, steps, size)
    terms = rsis_losses(mask_logits, class_logits, stop_logits, gt_masks, gt_labels, max_gt,
                        stop_balance_weight)
    on = dict(mask=True, cls=use_class_loss, stop=use_stop_loss)
    return {f'loss_{k}': terms[k] * (weights[k] if on[k] else 0.0)
            for k in ('mask', 'cls', 'stop')}


def crop_and_resize_probs(probs: Tensor, img_size: Sequence[int],
                          out_size: Sequence[int] = None) -> Tensor:
    """(T, Hp, Wp) probabilities -> cropped to the image (h, w) and, when ``out_size`` is
    given, resized to it (bilinear, corners aligned: the release's scipy ``zoom`` order 1)."""
    probs = probs[:, :int(img_size[0]), :int(img_size[1])]
    if out_size is not None:
        probs = upsample_align(probs[None], out_size)[0]
    return probs


def rsis_predict(decoder: RSISDecoder, skips: Sequence[Tensor], size: Sequence[int],
                 img_sizes: Sequence[Sequence[int]], out_sizes: Sequence, max_steps: int,
                 stop_thr: float = 0.5, mask_thr: float = 0.5, min_size: float = 0.001,
                 max_per_img: int = 100) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """Detections of a batch: ``max_steps`` steps, then :func:`rsis_postprocess` per image.

    Args:
        size: (Hp, Wp). img_sizes: B (h_b, w_b). out_sizes: B (H_b, W_b) or None (keep h_b, w_b).

    Returns:
        B tuples (masks (N, H_b, W_b) bool, scores (N,), labels (N,) in 0..K-1).
    """
    return rsis_predict_from_logits(*rsis_decode(decoder, skips, max_steps, size), img_sizes,
                                    out_sizes, stop_thr, mask_thr, min_size, max_per_img)


def rsis_predict_from_logits(mask_logits: Tensor, class_logits: Tensor, stop_logits: Tensor,
                             img_sizes: Sequence[Sequence[int]], out_sizes: Sequence,
                             stop_thr: float = 0.5, mask_thr: float = 0.5,
                             min_size: float = 0.001, max_per_img: int = 100
                             ) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """The post-processing of :func:`rsis_predict` on decoded outputs (e.g. an ONNX graph's).

    Args:
        mask_logits: (B, T, Hp, Wp). class_logits: (B, T, K + 1). stop_logits: (B, T).
        img_sizes, out_sizes, thresholds: as :func:`rsis_predict`.

    Returns:
        as :func:`rsis_predict`.
    """
    probs = torch.sigmoid(mask_logits)
    return [rsis_postprocess(crop_and_resize_probs(probs[i], img_sizes[i], out_sizes[i]),
                             class_logits[i], stop_logits[i], stop_thr, mask_thr, min_size,
                             max_per_img)
            for i in range(probs.shape[0])]
