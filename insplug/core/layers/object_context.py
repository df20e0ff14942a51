"""Object context (OCNet, Yuan & Wang, arXiv 1809.00916; official openseg-group/OCNet.pytorch,
``BaseOC_Module``).

Shapes: B images, C input channels, H x W map (N = H W pixels), K key channels, V value
channels, C_out output channels.

Base-OC: a self-attention "object context" over all pixels, with a shared key/query
projection (1x1 conv + BN + leaky ReLU 0.01 to K: the release's ``InPlaceABNSync``), a value
projection (1x1 conv to V) and an output 1x1 conv (V -> C_out, zero-initialised):
``context = W(softmax(K^-1/2 Q^T K) V)``; the context and the input are concatenated and fused
by a 1x1 conv + BN + leaky ReLU + dropout (0.05) to C_out. The OCNet model puts a 3x3 conv
2048 -> 512 + BN before it and uses C = C_out = 512, K = V = 256. ``scale > 1`` max-pools the
map before the attention and upsamples the context (bilinear, align_corners=True) as the
release does.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def object_context(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Scaled dot-product attention over pixels.

    Args:
        query: (B, K, N). key: (B, K, N). value: (B, V, N).

    Returns:
        (B, V, N): ``value @ softmax_over_keys(K^-1/2 query^T key)^T``.
    """
    sim = torch.bmm(query.transpose(1, 2), key) * query.shape[1] ** -0.5  # B, N_q, N_k
    return torch.bmm(value, F.softmax(sim, dim=-1).transpose(1, 2))


class SelfAttentionBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W) object context (``_SelfAttentionBlock`` of the release)."""

    def __init__(self, in_channels: int, key_channels: int, value_channels: int,
                 out_channels: int = None, scale: int = 1):
        super().__init__()
        out_channels = out_channels or in_channels
        self.scale = scale
        self.f_key = nn.Sequential(nn.Conv2d(in_channels, key_channels, 1),
                                   nn.BatchNorm2d(key_channels), nn.LeakyReLU(0.01))
        self.f_value = nn.Conv2d(in_channels, value_channels, 1)
        self.W = nn.Conv2d(value_channels, out_channels, 1)
        nn.init.constant_(self.W.weight, 0)
        nn.init.constant_(self.W.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        if self.scale > 1:
            x = F.max_pool2d(x, self.scale)
        b, _, h, w = x.shape
        key = self.f_key(x).flatten(2)  # the release's f_query is f_key
        context = self.W(object_context(key, key, self.f_value(x).flatten(2))
                         .reshape(b, -1, h, w))
        if self.scale > 1:
            context = F.interpolate(context, size=size, mode='bilinear', align_corners=True)
        return context


class BaseOC(nn.Module):
    """Base object-context block: (B, C, H, W) -> (B, C_out, H, W).

    Args:
        in_channels: C (512 in OCNet, after a 3x3 conv from the 2048-d res5).
        out_channels: C_out (512).
        key_channels: K (256; default C // 2).
        value_channels: V (256; default C // 2).
        dropout: Dropout2d after the fusion (0.05).
        sizes: pooling scale of each attention stage (the release uses one, scale 1); the
            stages' contexts are summed.
    """

    def __init__(self, in_channels: int, out_channels: int = None, key_channels: int = None,
                 value_channels: int = None, dropout: float = 0.05, sizes=(1,)):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        key_channels = key_channels or max(in_channels // 2, 1)
        value_channels = value_channels or max(in_channels // 2, 1)
        self.stages = nn.ModuleList(
            SelfAttentionBlock(in_channels, key_channels, value_channels, out_channels, s)
            for s in sizes)
        # the release's fusion takes 2 * in_channels (it assumes out_channels == in_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(out_channels + in_channels, out_channels, 1),
            nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.01), nn.Dropout2d(dropout))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C_out, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'BaseOC expects (B, {self.in_channels}, H, W), got '
                             f'{tuple(x.shape)}')
        context = sum(stage(x) for stage in self.stages)
        return self.conv_bn_dropout(torch.cat([context, x], dim=1))
