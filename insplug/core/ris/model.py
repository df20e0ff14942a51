"""RIS (Romera-Paredes & Torr, "Recurrent Instance Segmentation", ECCV 2016) recurrent head.

Follows the release bernard24/RIS (Lua Torch; plants_learning/ConvLSTM.lua,
create_lstm_protos.lua). Shapes: B images, C_in feature channels, C the ConvLSTM size (release
30), L layers (release 2), h x w the feature size (the release: 106 x 100 after its CNN), T steps.

* An L-layer ConvLSTM (:class:`insplug.core.recurrent.ConvLSTMCell`; the release sums an
  input and a hidden convolution, which is one convolution over the concatenation; gate order
  input, forget, output, candidate) reads the same features x at every step; layer l > 0 reads
  layer l-1's new hidden state. States start at zero.
* Mask (the release's ``post_lstm``): ``m = sigmoid(log_softmax_hw(conv1x1(h_L)) + b)`` with one
  learned scalar b (initialised to 1): a softmax over the pixels shifted by b. The mask logit
  returned is ``log_softmax + b``.
* Confidence: ``s = sigmoid(fc(flatten(h_L)))`` over the whole C x h x w state (bias initialised
  to 10), which fixes the feature size (``feat_size``); ``confidence='max'`` (the release's
  commented-out alternative is a max-pool) uses the global max-pooled state instead.
* Initialisation as released: uniform(-0.08, 0.08) weights and biases, and +1 on the input,
  forget and output gate biases; the mask conv uniform(-0.08, 0.08).
* ``num_classes > 1`` adds a class branch (insplug extension, not in RIS: the release is
  class-agnostic): a linear layer on the max-pooled top hidden state.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insplug.core.recurrent.convlstm import ConvLSTMCell, State


def release_init(cells: Sequence[ConvLSTMCell], mask_conv: nn.Conv2d, conf_fc: nn.Linear,
                 mask_bias: nn.Parameter):
    """The release's initialisation (in place)."""
    with torch.no_grad():
        for cell in cells:
            c = cell.hidden_channels
            cell.gates.weight.uniform_(-0.08, 0.08)
            # i2h bias uniform, then its first 3C (input, forget, output gates) set to 1,
            # plus the h2h bias uniform(-0.08, 0.08)
            bias = torch.empty_like(cell.gates.bias).uniform_(-0.08, 0.08)
            bias[:3 * c] = 1.0
            cell.gates.bias.copy_(bias + torch.empty_like(bias).uniform_(-0.08, 0.08))
        mask_conv.weight.uniform_(-0.08, 0.08)
        mask_bias.fill_(1.0)
        conf_fc.weight.uniform_(-0.08, 0.08)
        conf_fc.bias.fill_(10.0)


def pixel_log_softmax(logits: Tensor) -> Tensor:
    """log_softmax over the pixels of each map.

    Args:
        logits: (B, h, w).

    Returns:
        (B, h, w).
    """
    return F.log_softmax(logits.flatten(1), 1).view_as(logits)


class RISRecurrentHead(nn.Module):
    """ConvLSTM stack + mask / confidence (+ optional class) outputs; one call is one step.

    Args:
        in_channels: C_in. rnn_size: C (30). rnn_layers: L (2). kernel_size: 3.
        feat_size: (h, w), required by ``confidence='flatten'`` (the release's head).
        confidence: 'flatten' (release) or 'max'.
        num_classes: 1 (release, class-agnostic) or K > 1 (adds ``fc_class``).
        release_initialisation: apply :func:`release_init`.
        mask_bias_init: initial b (release 1.0; a mask pixel needs ``log_softmax + b > 0``,
            so short runs on small grids start higher, e.g. ``log(h w) - log(object area)``).

    forward(x (B, C_in, h, w), states None or L (h, c)) -> (mask_logits (B, h, w),
    conf_logits (B,), class_logits (B, K) or None, states).
    """

    def __init__(self, in_channels: int, rnn_size: int = 30, rnn_layers: int = 2,
                 kernel_size: int = 3, feat_size: Optional[Sequence[int]] = None,
                 confidence: str = 'flatten', num_classes: int = 1,
                 release_initialisation: bool = True, mask_bias_init: float = 1.0):
        super().__init__()
        if confidence not in ('flatten', 'max'):
            raise ValueError(f"confidence must be 'flatten' or 'max', got {confidence!r}")
        if confidence == 'flatten' and feat_size is None:
            raise ValueError("confidence='flatten' (the release's) needs feat_size=(h, w)")
        self.confidence = confidence
        self.feat_size = tuple(feat_size) if feat_size is not None else None
        self.num_classes = num_classes
        self.cells = nn.ModuleList(
            ConvLSTMCell(in_channels if i == 0 else rnn_size, rnn_size, kernel_size)
            for i in range(rnn_layers))
        self.mask_conv = nn.Conv2d(rnn_size, 1, 1)
        self.mask_bias = nn.Parameter(torch.ones(()))
        conf_in = rnn_size * self.feat_size[0] * self.feat_size[1] if confidence == 'flatten' \
            else rnn_size
        self.conf_fc = nn.Linear(conf_in, 1)
        self.fc_class = nn.Linear(rnn_size, num_classes) if num_classes > 1 else None
        if release_initialisation:
            release_init(self.cells, self.mask_conv, self.conf_fc, self.mask_bias)
        with torch.no_grad():
            self.mask_bias.fill_(mask_bias_init)

    def forward(self, x: Tensor, states: Optional[List[State]] = None):
        if self.confidence == 'flatten' and tuple(x.shape[-2:]) != self.feat_size:
            raise ValueError(f'RIS confidence over the flattened state needs features of '
                             f'{self.feat_size}, got {tuple(x.shape[-2:])}: resize the inputs '
                             f"to a fixed size or use confidence='max'")
        new_states, inp = [], x
        for i, cell in enumerate(self.cells):
            state = cell(inp, None if states is None else states[i])
            new_states.append(state)
            inp = state[0]
        top = inp
        mask_logits = pixel_log_softmax(self.mask_conv(top)[:, 0]) + self.mask_bias
        conf_in = top.flatten(1) if self.confidence == 'flatten' else top.amax(dim=(2, 3))
        conf_logits = self.conf_fc(conf_in)[:, 0]
        class_logits = self.fc_class(top.amax(dim=(2, 3))) if self.fc_class is not None else None
        return mask_logits, conf_logits, class_logits, new_states


def ris_decode(head: RISRecurrentHead, x: Tensor,
               num_steps: int) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Run ``num_steps`` steps on the same features.

    Args:
        head: :class:`RISRecurrentHead`. x: (B, C_in, h, w). num_steps: T.

    Returns:
        mask_logits (B, T, h, w), conf_logits (B, T), class_logits (B, T, K) or None.
    """
    states, masks, confs, classes = None, [], [], []
    for _ in range(num_steps):
        m, s, c, states = head(x, states)
        masks.append(m)
        confs.append(s)
        classes.append(c)
    cls = torch.stack(classes, 1) if classes[0] is not None else None
    return torch.stack(masks, 1), torch.stack(confs, 1), cls


def bilinear_down_filter(factor: int, channels: int = 3) -> Tensor:
    """The release's fixed down-sampling filter (plants_learning/experiment.lua, ``premodel``):
    a per-channel normalised bilinear kernel of side ``2 f - f % 2`` for stride ``f``.

    Returns:
        (channels, channels, k, k), diagonal in the channels.
    """
    k = 2 * factor - factor % 2
    f = -(-k // 2)
    c = (2 * f - 1 - f % 2) / (2 * f)
    r = torch.arange(k, dtype=torch.float64)
    w1 = 1 - (r / f - c).abs()
    kernel = w1[:, None] * w1[None, :]
    kernel = kernel / kernel.sum()
    weight = torch.zeros(channels, channels, k, k, dtype=torch.float64)
    for ch in range(channels):
        weight[ch, ch] = kernel
    return weight.float()


class RISConvNet(nn.Module):
    """The release's plants CNN: an optional fixed bilinear down-sampling convolution (stride
    ``downsample``, padding ``ceil((f - 1) / 2)``, not trained: ``learn_pre`` 0) then
    ``num_convs`` k x k convolutions of ``channels`` with ReLU (``create_cnn``: 4 x 30).

    forward((B, 3, H, W)) -> (B, channels, H / f, W / f).
    """

    def __init__(self, in_channels: int = 3, channels: int = 30, num_convs: int = 4,
                 kernel_size: int = 3, downsample: Optional[int] = None):
        super().__init__()
        self.downsample = downsample
        if downsample:
            self.register_buffer('down_weight', bilinear_down_filter(downsample, in_channels))
        layers = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size,
                                 padding=kernel_size // 2), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample:
            f = self.downsample
            x = F.conv2d(x, self.down_weight.to(x.dtype), stride=f, padding=-(-(f - 1) // 2))
        return self.convs(x)
