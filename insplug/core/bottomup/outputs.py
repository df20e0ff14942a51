"""Output layers of bottom-up heads: decoder features -> full-resolution per-pixel maps.

Shape shorthand: B images, C feature channels, K classes, S sigma dims, D embedding dims,
H/W input size, s = input stride of the features (H/s x W/s).

With ERFNet branches (stride 2) the output layer is the official stride-2 transposed 2x2 conv;
with an FPN level (stride 4, 8, ...) it is a 3x3 conv + ReLU + 1x1 conv followed by bilinear
upsampling to the input size.
"""
from typing import Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['OutputLayer', 'SpatialEmbeddingOutputs', 'DiscriminativeOutputs']


class OutputLayer(nn.Module):
    """(B, C, H/s, W/s) -> (B, out_channels, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, in_stride: int = 2):
        super().__init__()
        self.in_stride = in_stride
        if in_stride == 2:
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        elif in_stride == 1:
            self.conv = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.conv = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.Conv2d(in_channels, out_channels, 1))

    @property
    def last(self) -> nn.Module:
        """The final (weight, bias) layer, for output-specific initialisation."""
        return self.conv[-1] if isinstance(self.conv, nn.Sequential) else self.conv

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.in_stride > 2:
            y = F.interpolate(y, scale_factor=self.in_stride, mode='bilinear',
                              align_corners=False)
        return y


def _check_index(feats: Sequence[Tensor], index: Sequence[int], owner: str):
    if max(index) >= len(feats):
        raise ValueError(f'{owner}: in_index {tuple(index)} needs {max(index) + 1} feature maps, '
                         f'the neck/backbone gives {len(feats)}; set ERFNet(num_branches=2) or '
                         'in_index=(0, 0)')


class SpatialEmbeddingOutputs(nn.Module):
    """Offsets, sigma and per-class seeds of SpatialEmbeddings.

    Args:
        in_channels: C.
        num_classes: K (one seed map each).
        n_sigma: S, 1 (isotropic) or 2 (per axis).
        in_stride: s.
        in_index: feature map of (offsets+sigma, seeds) branches.
        sigma_init: initial sigma (official 1.0: a clustering radius of about 5.7 px at the
            official coordinate spacing of 1/1023 per pixel).

    Forward: tuple of feature maps -> offsets (B, 2, H, W), sigma (B, S, H, W),
    seed logits (B, K, H, W). Offset and sigma weights start at 0, with bias 0 (offsets) and
    ``sigma_init`` (sigma), as in the official ``init_output``.
    """

    def __init__(self, in_channels: int, num_classes: int, n_sigma: int = 1, in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1), sigma_init: float = 1.0):
        super().__init__()
        if n_sigma not in (1, 2):
            raise ValueError(f'SpatialEmbeddingOutputs: n_sigma must be 1 or 2, got {n_sigma}')
        self.n_sigma = n_sigma
        self.in_index = tuple(in_index)
        self.embedding = OutputLayer(in_channels, 2 + n_sigma, in_stride)
        self.seed = OutputLayer(in_channels, num_classes, in_stride)
        last = self.embedding.last
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        last.bias.data[2:] = sigma_init

    def forward(self, feats: Sequence[Tensor]):
        _check_index(feats, self.in_index, type(self).__name__)
        emb = self.embedding(feats[self.in_index[0]])
        return emb[:, :2], emb[:, 2:], self.seed(feats[self.in_index[1]])


class DiscriminativeOutputs(nn.Module):
    """Embeddings, semantic logits and (optional) instance-count density.

    Args:
        in_channels: C.
        num_classes: K (the semantic branch has K + 1 channels, 0 = background).
        embed_dims: D.
        predict_count: add a count-density channel to the semantic branch.
        in_stride: s.
        in_index: feature map of (embedding, semantic) branches.

    Forward: tuple of feature maps -> embeddings (B, D, H, W), semantic logits
    (B, K + 1, H, W), density (B, H, W) >= 0 or None.
    """

    def __init__(self, in_channels: int, num_classes: int, embed_dims: int = 8,
                 predict_count: bool = False, in_stride: int = 2,
                 in_index: Tuple[int, int] = (0, 1)):
        super().__init__()
        self.predict_count = predict_count
        self.in_index = tuple(in_index)
        self.embedding = OutputLayer(in_channels, embed_dims, in_stride)
        self.semantic = OutputLayer(in_channels, num_classes + 1 + int(predict_count), in_stride)
        if predict_count:  # start near zero density (softplus(-8) ~ 3e-4 per pixel)
            self.semantic.last.bias.data[-1] = -8.0

    def forward(self, feats: Sequence[Tensor]):
        _check_index(feats, self.in_index, type(self).__name__)
        emb = self.embedding(feats[self.in_index[0]])
        sem = self.semantic(feats[self.in_index[1]])
        if not self.predict_count:
            return emb, sem, None
        return emb, sem[:, :-1], F.softplus(sem[:, -1])
