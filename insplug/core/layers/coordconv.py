"""CoordConv location features: normalised pixel coordinates appended to a feature map.

Shapes: B images, C channels, H x W feature map. The two coordinate channels are (x, y), each
spanning [-1, 1] from the first to the last row/column (a single row or column gets -1).
"""
import torch
from torch import Tensor


def coordinate_grid(batch: int, height: int, width: int, device=None,
                    dtype=torch.float32) -> Tensor:
    """Normalised (x, y) coordinates of every pixel.

    Args:
        batch, height, width: output size B, H, W.

    Returns:
        (B, 2, H, W): channel 0 is x (varies along W), channel 1 is y (varies along H).
    """
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, 2, height, width)


def append_coordinates(features: Tensor) -> Tensor:
    """CoordConv input: coordinates first, then the features.

    Args:
        features: (B, C, H, W).

    Returns:
        (B, 2 + C, H, W).
    """
    b, _, h, w = features.shape
    coords = coordinate_grid(b, h, w, device=features.device, dtype=features.dtype)
    return torch.cat([coords, features], dim=1)
