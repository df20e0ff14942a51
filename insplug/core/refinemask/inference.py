"""RefineMask inference: boundary-aware merging of the stage outputs and batched pasting.

Shapes: N RoIs; stage outputs of side S_k (28, 56, 112 at test time); an image of H x W.

At test time the final mask starts from stage 1 (28 x 28). Going to each finer stage, only the
pixels on the width-1 boundary band of the current binary mask take the finer stage's logits;
the others keep the current logits, bilinearly upsampled (corners aligned).
"""
import torch
import torch.nn.functional as F

from .boundary import boundary_band, resize_binary

# pasting works on at most this many output pixels at once (N x region height x width)
PASTE_CHUNK_PIXELS = 1 << 25


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


def paste_region(boxes, img_h, img_w):
    """Smallest integer window of the image that holds every box (1 px margin).

    Args:
        boxes: (N, 4) x1, y1, x2, y2 in image pixels.

    Returns:
        x0, y0, x1, y1 python ints with 0 <= x0 <= x1 <= img_w (same for y).
    """
    x0 = int(max(0, min(img_w, boxes[:, 0].min().floor().item() - 1)))
    y0 = int(max(0, min(img_h, boxes[:, 1].min().floor().item() - 1)))
    x1 = int(max(x0, min(img_w, boxes[:, 2].max().ceil().item() + 1)))
    y1 = int(max(y0, min(img_h, boxes[:, 3].max().ceil().item() + 1)))
    return x0, y0, x1, y1


def paste_masks(masks, boxes, img_h, img_w, x0=0, y0=0, x1=None, y1=None):
    """Resample RoI masks into image window [y0:y1, x0:x1] (pixel centres at +0.5).

    Args:
        masks: (N, S, S) probabilities.
        boxes: (N, 4) x1, y1, x2, y2 in image pixels.
        img_h, img_w: image size; the window defaults to the whole image.

    Returns:
        (N, y1 - y0, x1 - x0) float, 0 outside each box.
    """
    x1 = img_w if x1 is None else x1
    y1 = img_h if y1 is None else y1
    n = masks.shape[0]
    ys = torch.arange(y0, y1, device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(x0, x1, device=masks.device, dtype=torch.float32) + 0.5
    bx0, by0, bx1, by1 = boxes.float().unbind(dim=1)
    # normalised coordinates in [-1, 1] across each box (grid_sample convention, no corner align)
    gy = (ys[None] - by0[:, None]) / (by1 - by0).clamp(min=1e-6)[:, None] * 2 - 1
    gx = (xs[None] - bx0[:, None]) / (bx1 - bx0).clamp(min=1e-6)[:, None] * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, gy.shape[1], gx.shape[1]),
                        gy[:, :, None].expand(n, gy.shape[1], gx.shape[1])], dim=3)
    out = F.grid_sample(masks[:, None].float(), grid, mode='bilinear', padding_mode='zeros',
                        align_corners=False)
    return out[:, 0]


def paste_masks_in_image(masks, boxes, img_h, img_w, threshold=0.5,
                         chunk_pixels=PASTE_CHUNK_PIXELS):
    """Paste N RoI masks into full-image masks, in batched chunks (no per-instance loop).

    Each chunk of RoIs is resampled at once over the window that bounds all of its boxes.

    Args:
        masks: (N, S, S) probabilities.
        boxes: (N, 4) x1, y1, x2, y2 in the output image's pixels.
        img_h, img_w: output size.
        threshold: binarise at this value; a negative value returns uint8 probabilities x 255.
        chunk_pixels: upper bound of N_chunk * window pixels resampled at once.

    Returns:
        (N, img_h, img_w) bool (or uint8 when ``threshold < 0``).
    """
    img_h, img_w = int(img_h), int(img_w)
    n = masks.shape[0]
    dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros(n, img_h, img_w, device=masks.device, dtype=dtype)
    if n == 0 or img_h == 0 or img_w == 0:
        return out
    per_chunk = max(1, chunk_pixels // (img_h * img_w))
    for start in range(0, n, per_chunk):  # chunks of many RoIs, not one per instance
        sl = slice(start, start + per_chunk)
        x0, y0, x1, y1 = paste_region(boxes[sl], img_h, img_w)
        if x1 <= x0 or y1 <= y0:
            continue
        pasted = paste_masks(masks[sl], boxes[sl], img_h, img_w, x0, y0, x1, y1)
        if threshold >= 0:
            pasted = pasted >= threshold
        else:
            pasted = (pasted * 255).to(torch.uint8)
        out[sl, y0:y1, x0:x1] = pasted
    return out
