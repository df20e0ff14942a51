"""Boundary bands of binary masks and nearest-size transfer of such bands (RefineMask).

Shapes: N masks, each H x W; ``w`` is the band width in pixels.

A pixel belongs to the band of a mask when more than a tenth of its (2w+1) x (2w+1) window
holds pixels of the other side of the mask (foreground for a background pixel, background for a
foreground pixel). Pixels outside the image count as background. With ``w = 1`` a pixel is in the
band as soon as one of its 8 neighbours is on the other side; with ``w = 2`` at least 3 of its 24
neighbours must be. This is the rule of the official RefineMask release (its
"block target" with boundary value 1).
"""
import torch
import torch.nn.functional as F

# a pixel is on the boundary when MORE than this fraction of its window is on the other side
OPPOSITE_FRACTION = 0.1


def window_counts(masks, width):
    """Number of foreground pixels in each pixel's (2*width+1)^2 window (zero padding).

    Args:
        masks: (N, H, W) bool or {0, 1} tensor.
        width: int >= 1.

    Returns:
        (N, H, W) float tensor of counts.
    """
    k = 2 * width + 1
    fg = masks.float()[:, None]
    ones = fg.new_ones(1, 1, k, k)
    return F.conv2d(F.pad(fg, (width, width, width, width)), ones)[:, 0]


def boundary_band(masks, width):
    """Boolean band of width ``width`` on both sides of each mask's contour.

    Args:
        masks: (N, H, W) bool, or float thresholded at 0.5.
        width: int >= 1, the band width in pixels.

    Returns:
        (N, H, W) bool tensor, True on the band.
    """
    if width < 1:
        raise ValueError(f'boundary width must be >= 1, got {width}')
    if masks.dim() != 3:
        raise ValueError(f'masks must be (N, H, W), got shape {tuple(masks.shape)}')
    fg = masks >= 0.5 if masks.is_floating_point() else masks.bool()
    area = float((2 * width + 1) ** 2)
    fg_count = window_counts(fg, width)
    bg_count = area - fg_count
    limit = OPPOSITE_FRACTION * area
    # foreground pixels with enough background around them, and vice versa (logical ops rather
    # than a boolean torch.where: same result, and onnxruntime has no boolean Where kernel)
    return (fg & (bg_count > limit)) | (~fg & (fg_count > limit))


def resize_binary(masks, size):
    """Resize boolean maps the way RefineMask does: bilinear (corners aligned), then >= 0.5.

    Args:
        masks: (N, h, w) bool tensor.
        size: int or (H, W).

    Returns:
        (N, H, W) bool tensor.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(masks.shape[-2:]) == size:
        return masks.bool()
    resized = F.interpolate(masks.float()[:, None], size=size, mode='bilinear',
                            align_corners=True)
    return resized[:, 0] >= 0.5
