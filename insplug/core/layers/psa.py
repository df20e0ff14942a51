"""Point-wise spatial attention (PSANet, Zhao et al., ECCV 2018; official hszhao/semseg
``PSA``, bi-directional ``psa_type=2``).

Shapes: B images, C input channels, H x W map (N = H W), C' reduced channels, h x w the map
after the optional shrink, (2h - 1) x (2w - 1) the over-complete attention window.

Each position predicts a (2h-1)(2w-1) attention map centred on itself; :func:`psa_mask`
(a pure-PyTorch equal of mmcv's ``PSAMask`` op) crops it to the h w positions of the map,
giving an (N, N) attention matrix per image: 'collect' (row q of position p's map is how much
p gathers from q) or 'distribute' (how much p sends to q). The release's forward, both
branches: reduce (1x1 conv-BN-ReLU to C'), shrink (bilinear, align_corners=True, to
``(H - 1) // f + 1``), attention (1x1 conv-BN-ReLU, 1x1 conv to (2h-1)(2w-1)), ``psa_mask``,
softmax over the source positions, aggregation ``x @ A`` (divided by the normalisation factor),
concatenation of both branches, projection (1x1 conv-BN-ReLU to C), upsampling back, and the
output is ``cat(input, projected)`` (2 C channels).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def psa_mask(mask: Tensor, mode: str) -> Tensor:
    """Crop over-complete attention windows to the map (mmcv ``PSAMask``).

    Args:
        mask: (B, (2h-1)(2w-1), h, w) (any odd window ``mh x mw`` with ``mh >= 2h - 1`` is
            centred as mmcv does: half = (mh - 1) // 2).
        mode: 'collect' or 'distribute'.

    Returns:
        (B, h w, h, w): collect: ``out[b, q, p] = mask[b, win(q - p), p]``; distribute:
        ``out[b, p, q]`` (as a flattened (h w, h w) matrix, channel index first) of the same
        values, where ``win(d)`` is the window cell at offset d from the window centre.
    """
    if mode not in ('collect', 'distribute'):
        raise ValueError(f"psa_mask: mode must be 'collect' or 'distribute', got {mode!r}")
    b, _, h, w = mask.shape
    mh, mw = 2 * h - 1, 2 * w - 1
    if mask.shape[1] != mh * mw:
        raise ValueError(f'psa_mask: a {h}x{w} map needs {mh}x{mw} = {mh * mw} mask channels, '
                         f'got {mask.shape[1]}')
    half_h, half_w = (mh - 1) // 2, (mw - 1) // 2
    ph = torch.arange(h, device=mask.device).view(h, 1, 1, 1)  # p (h, w), q (h, w)
    pw = torch.arange(w, device=mask.device).view(1, w, 1, 1)
    qh = torch.arange(h, device=mask.device).view(1, 1, h, 1)
    qw = torch.arange(w, device=mask.device).view(1, 1, 1, w)
    cell = ((qh - ph + half_h) * mw + (qw - pw + half_w)).reshape(h * w, h * w)  # [p, q]
    p_index = torch.arange(h * w, device=mask.device).view(-1, 1).expand(h * w, h * w)
    flat = mask.flatten(2)  # B, mh mw, h w
    values = flat[:, cell, p_index]  # B, p, q: mask[b, win(q - p), p]
    if mode == 'collect':
        values = values.transpose(1, 2)  # B, q, p
    return values.reshape(b, h * w, h, w)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class PSA(nn.Module):
    """Bi-directional point-wise spatial attention: (B, C, H, W) -> (B, 2 C, H, W).

    Args:
        in_channels: C (2048 in PSANet).
        mid_channels: C' (512).
        shrink_factor: f (2 in the release).
        normalization_factor: divisor of the aggregated features (1.0).
        psa_softmax: softmax over the source positions (True).
    The window size is derived from the map at run time (the release fixes ``mask_h = 2 h - 1``
    for its crop size), so any input size works.
    """

    def __init__(self, in_channels: int, mid_channels: int = 512, shrink_factor: int = 2,
                 normalization_factor: float = 1.0, psa_softmax: bool = True,
                 max_window: int = 59):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, 2 * in_channels
        self.shrink_factor = shrink_factor
        self.normalization_factor = normalization_factor
        self.psa_softmax = psa_softmax
        self.max_window = max_window
        self.reduce = _conv_bn_relu(in_channels, mid_channels)
        self.reduce_p = _conv_bn_relu(in_channels, mid_channels)
        # the attention conv predicts the largest window; smaller maps use its centre crop
        self.attention = nn.Sequential(_conv_bn_relu(mid_channels, mid_channels),
                                       nn.Conv2d(mid_channels, max_window ** 2, 1, bias=False))
        self.attention_p = nn.Sequential(_conv_bn_relu(mid_channels, mid_channels),
                                         nn.Conv2d(mid_channels, max_window ** 2, 1, bias=False))
        self.proj = _conv_bn_relu(2 * mid_channels, in_channels)

    def _window(self, y: Tensor, h: int, w: int) -> Tensor:
        """(B, M^2, h, w) full-window logits -> (B, (2h-1)(2w-1), h, w) centre crop."""
        m = self.max_window
        mh, mw = 2 * h - 1, 2 * w - 1
        if mh > m or mw > m:
            raise ValueError(f'PSA: a {h}x{w} (shrunk) map needs a {mh}x{mw} window, larger than '
                             f'max_window={m}; raise max_window or shrink_factor')
        y = y.reshape(y.shape[0], m, m, h, w)
        top, left = (m - mh) // 2, (m - mw) // 2
        return y[:, top:top + mh, left:left + mw].reshape(y.shape[0], mh * mw, h, w)

    def _branch(self, x: Tensor, reduce: nn.Module, attention: nn.Module, mode: str) -> Tensor:
        x = reduce(x)
        h, w = x.shape[-2:]
        if self.shrink_factor != 1:
            h, w = (h - 1) // self.shrink_factor + 1, (w - 1) // self.shrink_factor + 1
            x = F.interpolate(x, size=(h, w), mode='bilinear', align_corners=True)
        y = psa_mask(self._window(attention(x), h, w), mode)
        if self.psa_softmax:
            y = F.softmax(y, dim=1)
        b, c = x.shape[:2]
        out = torch.bmm(x.reshape(b, c, h * w), y.reshape(b, h * w, h * w))
        return out.reshape(b, c, h, w) / self.normalization_factor

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 2 C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'PSA expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        out = torch.cat([self._branch(x, self.reduce, self.attention, 'collect'),
                         self._branch(x, self.reduce_p, self.attention_p, 'distribute')], dim=1)
        out = self.proj(out)
        if self.shrink_factor != 1:
            out = F.interpolate(out, size=x.shape[-2:], mode='bilinear', align_corners=True)
        return torch.cat([x, out], dim=1)
