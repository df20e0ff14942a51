"""Soft attention window of recurrent attention (Ren & Zemel, CVPR 2017): the Gaussian filter
bank, patch extraction / pasting, the box parameterisation and the ground-truth boxes.

Shapes: B images, C channels, H x W the (fixed) model input, FH x FW the attention patch,
T time steps (instances) per image.

Parameterisation as in the release (renmengye/rec-attend-public, ``modellib.py``):

* the controller emits a normalised centre ``ctr_norm`` in (-1, 1)-ish and a log size
  ``lg_size``; ``ctr = (ctr_norm + 1) * (H, W) / 2`` and ``size = exp(lg_size) * (H, W)``
  (``get_unnormalized_attn``);
* along one axis of length L with F filters, filter j is centred at
  ``mu_j = ctr + (size + 1) / F * (j - (F - 1) / 2)`` and has variance ``exp(lg_var)``
  (``get_gaussian_filter``); ``filt[l, j] = N(l; mu_j, exp(lg_var))`` (not normalised over l);
* the default variance is ``lg_var = log(size / F)`` (``get_normalized_var``: the variance,
  not the standard deviation, equals the stride), or a predicted one (``dynamic_var``), or 0
  (``fixed_var``);
* a patch is ``Fy^T x Fx`` (``extract_patch``) and the patch is pasted back to the image by the
  transposed filter bank, ``Fy p Fx^T``.
"""
import math
from typing import Tuple, Union

import torch
from torch import Tensor

Number = Union[int, float, Tensor]


def gaussian_filter_bank(center: Tensor, size: Tensor, lg_var: Tensor, image_size: int,
                         filter_size: int) -> Tensor:
    """Gaussian filter bank along one axis (release: ``get_gaussian_filter``).

    Args:
        center: (B,) window centre in pixels.
        size: (B,) window size in pixels.
        lg_var: (B,) log variance of every filter of the bank.
        image_size: L, the axis length.
        filter_size: F, the number of filters (patch size along the axis).

    Returns:
        (B, L, F): ``filt[b, l, j] = exp(-(l - mu_j)^2 / (2 var)) / sqrt(2 pi var)``.
    """
    dtype, device = center.dtype, center.device
    j = torch.arange(filter_size, dtype=dtype, device=device).view(1, 1, -1)
    mu = center.view(-1, 1, 1) + (size.view(-1, 1, 1) + 1) / filter_size * \
        (j - (filter_size - 1) / 2.0)
    var = torch.exp(lg_var).view(-1, 1, 1)
    span = torch.arange(image_size, dtype=dtype, device=device).view(1, -1, 1)
    return torch.exp(-0.5 * (span - mu) ** 2 / var) / torch.sqrt(var) / math.sqrt(2 * math.pi)


def extract_patch(x: Tensor, filter_y: Tensor, filter_x: Tensor) -> Tensor:
    """Read an attention patch: ``Fy^T x Fx`` per channel (release: ``extract_patch``).

    Args:
        x: (B, C, H, W).
        filter_y: (B, H, FH). filter_x: (B, W, FW).

    Returns:
        (B, C, FH, FW).
    """
    return filter_y.transpose(1, 2)[:, None] @ x @ filter_x[:, None]


def paste_patch(patch: Tensor, filter_y: Tensor, filter_x: Tensor) -> Tensor:
    """Write a patch back to image size by the transposed filter bank, ``Fy p Fx^T`` (release:
    ``extract_patch`` with the transposed filters).

    Args:
        patch: (B, C, FH, FW).
        filter_y: (B, H, FH). filter_x: (B, W, FW).

    Returns:
        (B, C, H, W).
    """
    return filter_y[:, None] @ patch @ filter_x.transpose(1, 2)[:, None]


def unnormalize_attention(ctr_norm: Tensor, lg_size: Tensor, height: int,
                          width: int) -> Tuple[Tensor, Tensor]:
    """Controller outputs -> window centre and size in pixels (``get_unnormalized_attn``).

    Args:
        ctr_norm: (..., 2) normalised (y, x) centre. lg_size: (..., 2) log of size / image size.
        height, width: H, W.

    Returns:
        (ctr, size): two (..., 2) tensors in pixels, (y, x) order.
    """
    img = ctr_norm.new_tensor([height, width])
    return (ctr_norm + 1.0) * img / 2.0, torch.exp(lg_size) * img


def normalize_attention(ctr: Tensor, size: Tensor, height: int,
                        width: int) -> Tuple[Tensor, Tensor]:
    """Inverse of :func:`unnormalize_attention` (``get_normalized_center`` / ``_size``).

    Args:
        ctr: (..., 2) centre in pixels. size: (..., 2) size in pixels (> 0).
        height, width: H, W.

    Returns:
        (ctr_norm, lg_size): two (..., 2) tensors.
    """
    img = ctr.new_tensor([height, width])
    return ctr / (img / 2.0) - 1.0, torch.log(size / img)


def normalized_log_var(size: Tensor, filter_height: int, filter_width: int) -> Tensor:
    """Default filter variance: the window stride, ``log(size / F)`` (``get_normalized_var``).

    Args:
        size: (..., 2) window size (y, x) in pixels.

    Returns:
        (..., 2) log variance.
    """
    return torch.log(size) - torch.log(size.new_tensor([filter_height, filter_width]))


def box_corners(ctr: Tensor, size: Tensor) -> Tuple[Tensor, Tensor]:
    """(top_left, bottom_right) = ctr -/+ size / 2 (``get_box_coord``); (..., 2) each."""
    return ctr - size / 2.0, ctr + size / 2.0


def attention_filters(ctr: Tensor, size: Tensor, lg_var: Tensor, height: int, width: int,
                      filter_height: int, filter_width: int) -> Tuple[Tensor, Tensor]:
    """Both filter banks of a window.

    Args:
        ctr, size, lg_var: (B, 2) each, (y, x) order.

    Returns:
        (filter_y (B, H, FH), filter_x (B, W, FW)).
    """
    fy = gaussian_filter_bank(ctr[:, 0], size[:, 0], lg_var[:, 0], height, filter_height)
    fx = gaussian_filter_bank(ctr[:, 1], size[:, 1], lg_var[:, 1], width, filter_width)
    return fy, fx


def soft_attention_box(filter_y: Tensor, filter_x: Tensor, lg_gamma: Tensor,
                       beta: float = -5.0) -> Tensor:
    """Soft box of a window: ``sigmoid(exp(lg_gamma) * Fy 1 Fx^T + beta)`` (release: the
    ``attn_box`` of ``full_model.py``, beta -5).

    Args:
        filter_y: (B, H, FH). filter_x: (B, W, FW). lg_gamma: (B,) log gain.

    Returns:
        (B, H, W) in (0, 1).
    """
    # Fy 1 Fx^T of an all-ones patch is the outer product of the filters' row sums
    pasted = filter_y.sum(2)[:, :, None] * filter_x.sum(2)[:, None, :]
    return torch.sigmoid(torch.exp(lg_gamma).view(-1, 1, 1) * pasted + beta)


def gt_boxes_from_masks(masks: Tensor, padding_ratio: Number = 0.0,
                        center_shift_ratio: Number = 0.0,
                        min_padding: float = 10.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Ground-truth attention boxes of instance masks (release: ``get_gt_box``).

    The tight box of each mask (pixel indices, inclusive) is shifted by
    ``center_shift_ratio * size`` and grown on every side by
    ``max(padding_ratio * size, min_padding)``; the filled box is the pixels with
    ``top_left <= (y, x) <= bottom_right``. An empty mask gets the box
    ``(0, 0)-(2 min_padding, 2 min_padding)`` (its filled box stays empty, as released).

    Args:
        masks: (B, T, H, W) binary masks (zeros for missing instances).
        padding_ratio: number or (B, T, 1) tensor.
        center_shift_ratio: number or (B, T, 2) tensor.
        min_padding: pixels.

    Returns:
        (top_left (B, T, 2), bottom_right (B, T, 2), filled box (B, T, H, W) float).
    """
    b, t, h, w = masks.shape
    masks = masks.to(torch.float32) if not masks.is_floating_point() else masks
    ys = torch.arange(h, dtype=masks.dtype, device=masks.device)
    xs = torch.arange(w, dtype=masks.dtype, device=masks.device)
    rows = masks.amax(3)  # (B, T, H)
    cols = masks.amax(2)  # (B, T, W)
    big = float(h * w)
    top_left = torch.stack([(ys + (1 - rows) * big).amin(2), (xs + (1 - cols) * big).amin(2)], -1)
    bot_right = torch.stack([(ys * rows).amax(2), (xs * cols).amax(2)], -1)
    size = bot_right - top_left
    pad = torch.clamp(padding_ratio * size, min=min_padding)
    top_left = top_left + center_shift_ratio * size - pad
    bot_right = bot_right + center_shift_ratio * size + pad
    inside_y = (ys.view(1, 1, -1) >= top_left[..., :1]) & (ys.view(1, 1, -1) <= bot_right[..., :1])
    inside_x = (xs.view(1, 1, -1) >= top_left[..., 1:]) & (xs.view(1, 1, -1) <= bot_right[..., 1:])
    box = (inside_y[..., :, None] & inside_x[..., None, :]).to(masks.dtype)
    nonzero = (masks.sum((2, 3)) > 0).to(masks.dtype)[..., None]
    top_left = top_left * nonzero
    bot_right = nonzero * bot_right + (1 - nonzero) * (2 * min_padding)
    return top_left, bot_right, box
