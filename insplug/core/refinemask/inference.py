"""RefineMask inference: boundary-aware merging of the stage outputs and pasting
(:mod:`insplug.core.postprocess.paste`).

Shapes: N RoIs; stage outputs of side S_k (28, 56, 112 at test time); an image of H x W.

At test time the final mask starts from stage 1 (28 x 28). Going to each finer stage, only the
pixels on the width-1 boundary band of the current binary mask take the finer stage's logits;
the others keep the current logits, bilinearly upsampled (corners aligned).
"""
import torch
import torch.nn.functional as F

from insplug.core.postprocess.paste import PASTE_CHUNK_PIXELS, paste_masks_in_boxes

from .boundary import boundary_band, resize_binary


def merge_stage_logits(prev_logits, cur_logits, prev_pred):
    """Combine two consecutive stages: finer logits on the boundary, upsampled coarse elsewhere.

    Args:
        prev_logits: (N, s, s) logits of the coarser stage.
        cur_logits: (N, S, S) logits of the finer stage.
        prev_pred: (N, s, s) bool, the binary mask whose boundary band (width 1) is refined.

    Returns:
        (N, S, S) logits.
    """
    size = cur_logits.shape[-2:]
    refine = resize_binary(boundary_band(prev_pred, 1), size)
    coarse = F.interpolate(prev_logits[:, None], size=size, mode='bilinear',
                           align_corners=True)[:, 0]
    return torch.where(refine, cur_logits, coarse)


def refine_stage_logits(stage_logits, first_stage=1):
    """The test-time mask logits: stages from ``first_stage`` on, merged coarse to fine.

    Args:
        stage_logits: list of K tensors (N, S_k, S_k).
        first_stage: index of the stage the merging starts from (official: 1, i.e. 28 x 28).

    Returns:
        (N, S_{K-1}, S_{K-1}) logits.
    """
    merged = stage_logits[first_stage]
    for cur in stage_logits[first_stage + 1:]:
        merged = merge_stage_logits(merged, cur, merged >= 0)
    return merged


def paste_masks_in_image(masks, boxes, img_h, img_w, threshold=0.5,
                         chunk_pixels=PASTE_CHUNK_PIXELS):
    """Paste N RoI masks into full-image masks as the release does (mmdet 2.x
    ``_do_paste_mask``: float32 bilinear sampling, pixel centres at +0.5, ``>= threshold``),
    with the shared windowed paster (no per-instance loop, no full-image work per instance).

    Args:
        masks: (N, S, S) probabilities.
        boxes: (N, 4) x1, y1, x2, y2 in the output image's pixels.
        img_h, img_w: output size.
        threshold: binarise at this value; a negative value returns uint8 probabilities x 255.
        chunk_pixels: upper bound of instances x window pixels sampled at once.

    Returns:
        (N, img_h, img_w) bool (or uint8 when ``threshold < 0``).
    """
    return paste_masks_in_boxes(masks, boxes, img_h, img_w, threshold, dtype=torch.float32,
                                chunk_pixels=chunk_pixels)
