"""RIS training and inference on a batch, framework-free (the mmdet head and the detectron2
meta-architecture only convert their ground truth and image metadata).

Shapes: B images, M_b GT instances, (Hp, Wp) the padded batch input, (h, w) the feature grid,
T steps, (h_b, w_b) / (H_b, W_b) image b's input / output size.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.rsis.decoder import upsample_align
from insplug.core.rsis.pipeline import crop_and_resize_probs, pad_masks

from .inference import ris_postprocess
from .loss import ris_loss_single, ris_train_steps
from .model import RISRecurrentHead, ris_decode


def ris_gt_on_grid(masks: List[Tensor], labels: List[Tensor], size: Sequence[int],
                   grid: Sequence[int]) -> Tuple[List[Tensor], List[Tensor]]:
    """GT masks on the feature grid: zero-padded to (Hp, Wp), nearest-neighbour resized to
    (h, w) (the release's ``image.scale(..., 'simple')``); instances that vanish are dropped.

    Args:
        masks: B tensors (M_b, h_b, w_b). labels: B tensors (M_b,).

    Returns:
        B tensors (M_b', h, w) float and B label tensors (M_b',).
    """
    out_masks, out_labels = [], []
    for m, lab in zip(masks, labels):
        m = pad_masks(m, size)
        if len(m):
            m = F.interpolate(m[None], size=tuple(int(s) for s in grid), mode='nearest')[0]
        else:
            m = m.new_zeros((0, int(grid[0]), int(grid[1])))
        keep = m.flatten(1).sum(1) > 0
        out_masks.append(m[keep])
        out_labels.append(lab.long()[keep])
    return out_masks, out_labels


def ris_train_loss(net: RISRecurrentHead, x: Tensor, gt_masks: List[Tensor],
                   gt_labels: List[Tensor], seq_length: int = 40, lam: float = 1.0,
                   class_weight: float = 1.0) -> Tensor:
    """Mean over the batch of :func:`ris_loss_single` (the release trains one image at a time),
    each image on its first ``min(seq_length, M_b + 1)`` steps.

    Args:
        net: the recurrent head. x: (B, C, h, w). gt_masks / gt_labels: from
            :func:`ris_gt_on_grid` (labels used only with the class branch).

    Returns:
        scalar.
    """
    steps = [ris_train_steps(len(m), seq_length) for m in gt_masks]
    mask_logits, conf_logits, class_logits = ris_decode(net, x, max(steps))
    probs = torch.sigmoid(mask_logits).flatten(2)
    losses = []
    for i, (m, t) in enumerate(zip(gt_masks, steps)):
        loss, _, _ = ris_loss_single(probs[i, :t], conf_logits[i, :t], m.flatten(1), lam,
                                     None if class_logits is None else class_logits[i, :t],
                                     gt_labels[i], class_weight)
        losses.append(loss)
    return torch.stack(losses).mean()


def ris_predict(net: RISRecurrentHead, x: Tensor, size: Sequence[int],
                img_sizes: Sequence[Sequence[int]], out_sizes: Sequence, max_steps: int = 30,
                stop_thr: float = 0.5, mask_thr: float = 0.9,
                max_per_img: int = 100) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """Instances of a batch: ``max_steps`` steps, masks upsampled (bilinear, corners aligned) to
    the padded input, then per image cropped / resized and :func:`ris_postprocess`.

    Returns:
        B tuples (masks (N, H_b, W_b) bool, scores (N,), labels (N,)), by score.
    """
    return ris_predict_from_logits(*ris_decode(net, x, max_steps), size, img_sizes, out_sizes,
                                   stop_thr, mask_thr, max_per_img)


def ris_predict_from_logits(mask_logits: Tensor, conf_logits: Tensor,
                            class_logits: Optional[Tensor], size: Sequence[int],
                            img_sizes: Sequence[Sequence[int]], out_sizes: Sequence,
                            stop_thr: float = 0.5, mask_thr: float = 0.9,
                            max_per_img: int = 100) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """The post-processing of :func:`ris_predict` on decoded outputs (e.g. an ONNX graph's).

    Args:
        mask_logits: (B, T, h, w). conf_logits: (B, T). class_logits: (B, T, K) or None.
        size, img_sizes, out_sizes, thresholds: as :func:`ris_predict`.

    Returns:
        as :func:`ris_predict`.
    """
    probs = upsample_align(torch.sigmoid(mask_logits), size)
    results = []
    for i in range(probs.shape[0]):
        masks, scores, labels = ris_postprocess(
            crop_and_resize_probs(probs[i], img_sizes[i], out_sizes[i]), conf_logits[i],
            None if class_logits is None else class_logits[i], stop_thr, mask_thr)
        order = torch.argsort(scores, descending=True, stable=True)[:max_per_img]
        results.append((masks[order], scores[order], labels[order]))
    return results
