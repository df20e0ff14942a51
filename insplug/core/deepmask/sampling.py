"""DeepMask training windows (the release's ``DataSampler.lua``), in image coordinates.

Shapes: N objects; M windows; B images of H x W; boxes / windows are (x1, y1, x2, y2) floats.

Release settings (``train.lua``): iSz = 160 (the labelled central window), wSz = iSz + 32 = 192
(the network input, with 16 px of context on each side), objSz = ceil(iSz 128 / 224) = 92 (an
object's max side inside the 192-px input), shift = 16 px, scale jitter = 0.25 octave.

* Mask samples (``maskSampling`` / ``jitterBox``): for an object of max side ``d``:
  ``s = log2(d / objSz) + U(-scale, scale)``, centre ``+ U(-shift, shift) 2^s``, a window of side
  ``wSz 2^s``; the label is that object's mask on the central ``iSz / wSz`` of it at gSz x gSz.
* Positive score samples (``createBBstruct`` / ``posSamplingBB``): the object centre, the image
  scaled by ``2^(-l step)`` where ``l`` is the smallest integer with
  ``objSz 2^((l-1) step) < d <= objSz 2^((l+1) step)`` (step 0.25): no shift, scale within 1/4
  octave of canonical.
* Negative score samples (``negSamplingBB``): an image scale exponent ``e`` from
  {-3, -2.75, ..., 2}, a centre uniform over the scaled image, accepted when every object whose
  canonical exponent is within 10 steps of ``e`` has its centre at least ``3 shift`` px away
  (measured in the scaled image); up to 100 tries, the last one is kept otherwise. The release
  measures the distance to centres scaled by the *object's* exponent, not ``e``; here both are
  in the window's frame (docs/deviations/deepmask.md).
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import roi_align


def canonical_levels(max_sides: Tensor, obj_size: float, step: float = 0.25,
                     max_level: int = 32) -> Tuple[Tensor, Tensor]:
    """Quantised scale level of each object (``createBBstruct``).

    Args:
        max_sides: (N,) max(w, h) of each object box.
        obj_size: objSz. step: 0.25 (octaves). max_level: the release scans -32..32.

    Returns:
        levels (N,) long, the smallest l with obj 2^((l-1) step) < d <= obj 2^((l+1) step);
        valid (N,) bool (l within +-max_level and d > 0).
    """
    ratio = torch.log2(max_sides.clamp(min=1e-6) / obj_size) / step
    levels = torch.ceil(ratio - 1 - 1e-9).long()
    # guard float rounding at the interval edges: step up while d > obj 2^((l+1) step)
    levels = levels + (max_sides > obj_size * torch.pow(2.0, (levels + 1) * step)).long()
    valid = (levels.abs() <= max_level) & (max_sides > 0)
    return levels, valid


def square_windows(centres: Tensor, sides: Tensor) -> Tensor:
    """centres (M, 2) (x, y), sides (M,) -> windows (M, 4) (x1, y1, x2, y2)."""
    half = sides[:, None] / 2
    return torch.cat([centres - half, centres + half], 1)


def jitter_mask_windows(boxes: Tensor, obj_size: float, context_size: float, shift: float,
                        scale_jitter: float, generator: Optional[torch.Generator] = None
                        ) -> Tensor:
    """Jittered input windows around objects (``jitterBox``).

    Args:
        boxes: (N, 4) object boxes. obj_size: objSz. context_size: wSz.
        shift: max centre jitter in input pixels (16). scale_jitter: octaves (0.25).

    Returns:
        (N, 4) windows of side ``wSz 2^s``.
    """
    wh = boxes[:, 2:] - boxes[:, :2]
    centres = boxes[:, :2] + wh / 2
    s = torch.log2(wh.max(1).values.clamp(min=1e-6) / obj_size)
    u = torch.rand(boxes.shape[0], 3, generator=generator, device=boxes.device,
                   dtype=boxes.dtype) * 2 - 1
    s = s + u[:, 0] * scale_jitter
    centres = centres + u[:, 1:] * shift * torch.pow(2.0, s)[:, None]
    return square_windows(centres, context_size * torch.pow(2.0, s))


def positive_score_windows(boxes: Tensor, obj_size: float, context_size: float,
                           step: float = 0.25) -> Tuple[Tensor, Tensor]:
    """Windows centred on objects at their quantised scale (``posSamplingBB``).

    Args:
        boxes: (N, 4).

    Returns:
        windows (N, 4) of side ``wSz 2^(l step)``; valid (N,) bool.
    """
    wh = boxes[:, 2:] - boxes[:, :2]
    levels, valid = canonical_levels(wh.max(1).values, obj_size, step)
    centres = boxes[:, :2] + wh / 2
    return square_windows(centres, context_size * torch.pow(2.0, levels * step)), valid


def negative_score_windows(boxes: Tensor, height: int, width: int, num: int, obj_size: float,
                           context_size: float, shift: float, step: float = 0.25,
                           exponents: Tuple[float, float] = (-3.0, 2.0), tries: int = 100,
                           generator: Optional[torch.Generator] = None) -> Tensor:
    """Background windows (``negSamplingBB``), ``tries`` candidates each, vectorised.

    Args:
        boxes: (N, 4) all object boxes of the image (N may be 0).
        height, width: image size. num: windows wanted.
        exponents: range of the image scale exponent e (step ``step``).

    Returns:
        (num, 4) windows of side ``wSz 2^(-e)``.
    """
    device, dtype = boxes.device, boxes.dtype
    n_exp = int(round((exponents[1] - exponents[0]) / step)) + 1
    e = exponents[0] + step * torch.randint(n_exp, (num, tries), generator=generator,
                                            device=device).to(dtype)
    u = torch.rand(num, tries, 2, generator=generator, device=device, dtype=dtype)
    scale = torch.pow(2.0, e)  # image scale factor
    xy = u * torch.tensor([width, height], device=device, dtype=dtype) * scale[..., None]
    ok = torch.ones(num, tries, dtype=torch.bool, device=device)
    if boxes.shape[0]:
        wh = boxes[:, 2:] - boxes[:, :2]
        levels, valid = canonical_levels(wh.max(1).values, obj_size, step)
        obj_exp = -levels.to(dtype) * step  # image scale exponent that makes it canonical
        centres = boxes[:, :2] + wh / 2
        near = (obj_exp[None, None] - e[..., None]).abs() <= 10 * step + 1e-9  # (num, T, N)
        dist = torch.linalg.norm(xy[..., None, :] - centres * scale[..., None, None], dim=-1)
        ok = ~(near & valid & (dist < 3 * shift)).any(-1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(ok[:, 0], tries - 1,
                                                                          dtype=torch.long))
    pick = torch.arange(num, device=device)
    centres_img = xy[pick, first] / scale[pick, first, None]
    centres_img = torch.minimum(centres_img.clamp(min=0),
                                torch.tensor([width, height], device=device, dtype=dtype))
    return square_windows(centres_img, context_size / scale[pick, first])


def label_regions(windows: Tensor, window_size: float, context_size: float) -> Tensor:
    """The central ``iSz / wSz`` of each input window: (M, 4) -> (M, 4)."""
    centres = (windows[:, :2] + windows[:, 2:]) / 2
    sides = (windows[:, 2] - windows[:, 0]) * window_size / context_size
    return square_windows(centres, sides)


def crop_windows(images: Tensor, batch_index: Tensor, windows: Tensor, size: int,
                 pad_value: Tensor) -> Tensor:
    """Crop and resample windows to ``size`` x ``size``; outside the image reads ``pad_value``.

    Args:
        images: (B, C, H, W) whose area outside each image already holds ``pad_value``.
        batch_index: (M,) long. windows: (M, 4). pad_value: (C,) (the release's 0.5 grey,
            normalised).

    Returns:
        (M, C, size, size). Bilinear RoIAlign (aligned, adaptive sampling) stands for the
        release's crop + ``image.scale``.
    """
    pad = pad_value.view(1, -1, 1, 1).to(images)
    rois = torch.cat([batch_index[:, None].to(windows), windows], 1)
    return roi_align(images - pad, rois.to(images), size, 1.0, 0, True) + pad


def crop_mask_targets(masks: Tensor, regions: Tensor, size: int) -> Tensor:
    """Binary label of each window: its object's mask on ``regions`` at ``size`` x ``size``.

    Args:
        masks: (M, H, W) {0, 1}, one object mask per window. regions: (M, 4).

    Returns:
        (M, size, size) float {0, 1} (resampled > 0.5, as the release's ``gt(0.5)``).
    """
    rois = torch.cat([torch.arange(masks.shape[0], device=masks.device)[:, None].to(regions),
                      regions], 1)
    crops = roi_align(masks[:, None].float(), rois.float(), size, 1.0, 0, True)[:, 0]
    return (crops > 0.5).float()


def release_obj_size(window_size: int) -> int:
    """objSz = ceil(iSz 128 / 224) (92 for iSz 160)."""
    return int(math.ceil(window_size * 128 / 224))
