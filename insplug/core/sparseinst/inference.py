"""SparseInst inference without NMS: scoring, mask rescoring, resizing and boxes from masks.

Shapes: N predictions, K classes, h x w predicted mask size (stride 4), Hp x Wp the padded
input size, (H_img, W_img) the image's un-padded size in the input, (H_out, W_out) the output
size (original image size when rescaling), n kept instances.

Per image: ``score = sqrt(sigmoid(cls) * sigmoid(objectness))``, max over classes gives the
label; predictions scoring <= ``cls_threshold`` are dropped; the score is multiplied by the
mask's "maskness" (mean probability inside its binarised mask); the top ``max_per_img`` are
kept; masks are upsampled to the padded input, cropped to the image, resized to the output
size and binarised at ``mask_threshold``; boxes are the tight boxes of the binary masks.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes


def instance_scores(cls_logits: Tensor, obj_logits: Tensor) -> Tensor:
    """Class scores combined with objectness.

    Args:
        cls_logits: (..., N, K).
        obj_logits: (..., N, 1).

    Returns:
        (..., N, K) ``sqrt(sigmoid(cls) * sigmoid(obj))``.
    """
    return torch.sqrt(cls_logits.sigmoid() * obj_logits.sigmoid())


def maskness(mask_probs: Tensor, threshold: float) -> Tensor:
    """Mean probability inside each binarised mask (0 for an empty mask).

    Args:
        mask_probs: (n, h, w) probabilities.

    Returns:
        (n,).
    """
    binary = (mask_probs > threshold).to(mask_probs.dtype)
    return (mask_probs * binary).sum((1, 2)) / (binary.sum((1, 2)) + 1e-6)


def postprocess_single(cls_logits: Tensor, obj_logits: Tensor, mask_logits: Tensor,
                       pad_shape: Tuple[int, int], img_shape: Tuple[int, int],
                       out_shape: Tuple[int, int], cls_threshold: float = 0.005,
                       mask_threshold: float = 0.45, max_per_img: int = 100) -> Dict[str, Tensor]:
    """Instances of one image.

    Args:
        cls_logits: (N, K); obj_logits: (N, 1); mask_logits: (N, h, w).
        pad_shape: (Hp, Wp); img_shape: (H_img, W_img); out_shape: (H_out, W_out).

    Returns:
        dict ``scores`` (n,), ``labels`` (n,) int64, ``masks`` (n, H_out, W_out) bool,
        ``bboxes`` (n, 4) in output coordinates; sorted by descending score.
    """
    scores, labels = instance_scores(cls_logits, obj_logits).max(-1)
    keep = scores > cls_threshold
    scores, labels, probs = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    scores = scores * maskness(probs, mask_threshold)
    order = scores.argsort(descending=True)[:max_per_img]
    scores, labels, probs = scores[order], labels[order], probs[order]
    if len(scores):
        probs = F.interpolate(probs[:, None], size=tuple(pad_shape), mode='bilinear',
                              align_corners=False)[:, :, :img_shape[0], :img_shape[1]]
        if tuple(probs.shape[-2:]) != tuple(out_shape):  # equal sizes: the identity
            probs = F.interpolate(probs, size=tuple(out_shape), mode='bilinear',
                                  align_corners=False)
        masks = probs[:, 0] > mask_threshold
    else:
        masks = torch.zeros((0, *out_shape), dtype=torch.bool, device=mask_logits.device)
    return dict(scores=scores, labels=labels, masks=masks, bboxes=masks_to_boxes(masks))


def sparseinst_inference(outputs: Dict[str, Tensor], pad_shape: Tuple[int, int],
                         img_shapes: Sequence[Tuple[int, int]],
                         out_shapes: Sequence[Tuple[int, int]], cls_threshold: float = 0.005,
                         mask_threshold: float = 0.45,
                         max_per_img: int = 100) -> List[Dict[str, Tensor]]:
    """Per-image instances from the decoder outputs of a batch.

    Args:
        outputs: ``cls_logits`` (B, N, K), ``obj_logits`` (B, N, 1), ``mask_logits`` (B, N, h, w).
        pad_shape: (Hp, Wp); img_shapes, out_shapes: B (H, W) pairs.

    Returns:
        B dicts as in :func:`postprocess_single`.
    """
    return [postprocess_single(c, o, m, pad_shape, tuple(i[:2]), tuple(s[:2]), cls_threshold,
                               mask_threshold, max_per_img)
            for c, o, m, i, s in zip(outputs['cls_logits'], outputs['obj_logits'],
                                     outputs['mask_logits'], img_shapes, out_shapes)]
