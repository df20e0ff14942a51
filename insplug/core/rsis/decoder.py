"""RSIS (Salvador et al., 2017) skip projections and recurrent ConvLSTM decoder.

Follows the release imatge-upc/rsis (src/modules/model.py: ``FeatureExtractor`` skip convs,
``RSIS`` decoder). Shapes: B images, C hidden size (release 128), K1 = K + 1 class outputs
(index 0 is the release's end-of-sequence/background slot, never a matched target),
five encoder levels deepest first ``x5, x4, x3, x2, x1`` (ResNet: layer4, layer3, layer2,
layer1 and the stem's ReLU output before max-pooling, strides 32, 16, 8, 4, 2).

Skip projections: ``bn_i(conv_i(x_i))`` to C, C, C/2, C/4, C/8 channels (k x k conv, padding
1 for k = 3, 0 for k = 1; BatchNorm). Decoder step: five ConvLSTM cells with C, C/2, C/4, C/8,
C/16 hidden channels run from the deepest level up; cell i's hidden state is upsampled
(bilinear, align_corners=True: ``nn.UpsamplingBilinear2d``) to level i+1's size and
concatenated with that level's skip ('concat'; 'sum', 'mul', 'none' as released); after the last
cell the hidden state is upsampled x2 and ``conv_out`` gives the (B, 1, 2 H1, 2 W1) mask logits
(H1 x W1 = the stem's size, i.e. the input size). The class and stop logits come from the
concatenation of each cell's global max-pooled hidden state (B, C + C/2 + ... + C/16) through
``fc_class`` (K1) and ``fc_stop`` (1). The ConvLSTM states carry over from step to step.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insplug.core.recurrent.convlstm import ConvLSTMCell, State


def release_padding(kernel_size: int) -> int:
    """RSIS's padding rule: ``0 if kernel_size == 1 else 1``."""
    return 0 if kernel_size == 1 else 1


def skip_channels(hidden_size: int) -> List[int]:
    """Output channels of the five skip projections: [C, C, C/2, C/4, C/8]."""
    return [hidden_size, hidden_size, hidden_size // 2, hidden_size // 4, hidden_size // 8]


def decoder_channels(hidden_size: int) -> List[int]:
    """Hidden channels of the five ConvLSTM cells: [C, C/2, C/4, C/8, C/16]."""
    return [hidden_size // (2 ** i) for i in range(5)]


def upsample_align(x: Tensor, size: Sequence[int]) -> Tensor:
    """``nn.UpsamplingBilinear2d(size)``: bilinear with align_corners=True.

    Args:
        x: (B, C, h, w). size: (H, W).

    Returns:
        (B, C, H, W).
    """
    return F.interpolate(x, size=tuple(int(s) for s in size), mode='bilinear',
                         align_corners=True)


class RSISSkips(nn.Module):
    """Skip projections ``bn_i(conv_i(x_i))`` of the five encoder levels (deepest first).

    Args:
        in_channels: five input channel counts, deepest first (ResNet-101: 2048, 1024, 512,
            256, 64; ResNet-18/34: 512, 256, 128, 64, 64).
        hidden_size: C.
        kernel_size: 3 (release) or 1.

    forward(list of 5 (B, Cin_i, H_i, W_i), deepest first) -> list of 5 (B, Cout_i, H_i, W_i).
    """

    def __init__(self, in_channels: Sequence[int], hidden_size: int = 128, kernel_size: int = 3):
        super().__init__()
        if len(in_channels) != 5:
            raise ValueError(f'RSISSkips needs 5 encoder levels, got {len(in_channels)}')
        pad = release_padding(kernel_size)
        outs = skip_channels(hidden_size)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, kernel_size, padding=pad)
                                   for i, o in zip(in_channels, outs))
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for o in outs)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        return [bn(conv(x)) for conv, bn, x in zip(self.convs, self.bns, feats)]


class RSISDecoder(nn.Module):
    """The recurrent decoder: one call is one time step (one instance).

    Args:
        hidden_size: C (release 128).
        num_classes: K1 = K + 1 class outputs (release: ``num_classes`` including index 0).
        kernel_size: ConvLSTM / conv_out kernel (3).
        skip_mode: 'concat' (release default), 'sum', 'mul' or 'none'.
        dropout: Dropout2d on each hidden state (release default 0).
        dropout_cls, dropout_stop: dropout before fc_class / fc_stop (release default 0).

    forward(skips: list of 5 (B, Cs_i, H_i, W_i) from :class:`RSISSkips`, states: None or list
    of 5 (h, c)) -> (mask_logits (B, 1, 2 H_5, 2 W_5) with H_5 x W_5 the shallowest skip's size,
    class_logits (B, K1), stop_logits (B,), states).
    """

    def __init__(self, hidden_size: int = 128, num_classes: int = 21, kernel_size: int = 3,
                 skip_mode: str = 'concat', dropout: float = 0.0, dropout_cls: float = 0.0,
                 dropout_stop: float = 0.0):
        super().__init__()
        if skip_mode not in ('concat', 'sum', 'mul', 'none'):
            raise ValueError(f'skip_mode {skip_mode!r} is not one of concat/sum/mul/none')
        self.hidden_size = hidden_size
        self.num_class_outputs = num_classes  # K + 1 (not mmdet's num_classes check)
        self.skip_mode = skip_mode
        self.dropout = dropout
        self.dropout_cls = dropout_cls
        self.dropout_stop = dropout_stop
        pad = release_padding(kernel_size)
        outs = decoder_channels(hidden_size)
        cells = []
        for i, out in enumerate(outs):
            cin = hidden_size if i == 0 else outs[i - 1] * (2 if skip_mode == 'concat' else 1)
            cells.append(ConvLSTMCell(cin, out, kernel_size, padding=pad))
        self.clstm = nn.ModuleList(cells)
        self.conv_out = nn.Conv2d(outs[-1], 1, kernel_size, padding=pad)
        self.fc_class = nn.Linear(sum(outs), num_classes)
        self.fc_stop = nn.Linear(sum(outs), 1)

    def forward(self, skips: Sequence[Tensor], states: Optional[List[State]] = None):
        clstm_in = skips[0]
        rest = skips[1:]
        side, new_states = [], []
        for i, cell in enumerate(self.clstm):
            state = cell(clstm_in, None if states is None else states[i])
            new_states.append(state)
            hidden = state[0]
            if self.dropout > 0:
                hidden = F.dropout2d(hidden, self.dropout, self.training)
            side.append(hidden.amax(dim=(2, 3)))
            if i < len(rest):
                skip = rest[i]
                hidden = upsample_align(hidden, skip.shape[-2:])
                if self.skip_mode == 'concat':
                    clstm_in = torch.cat([hidden, skip], 1)
                elif self.skip_mode == 'sum':
                    clstm_in = hidden + skip
                elif self.skip_mode == 'mul':
                    clstm_in = hidden * skip
                else:
                    clstm_in = hidden
            else:
                clstm_in = upsample_align(hidden, (hidden.shape[-2] * 2, hidden.shape[-1] * 2))
        mask_logits = self.conv_out(clstm_in)
        side = torch.cat(side, 1)
        cls_in = F.dropout(side, self.dropout_cls, self.training) if self.dropout_cls > 0 else side
        stop_in = (F.dropout(side, self.dropout_stop, self.training) if self.dropout_stop > 0
                   else side)
        return mask_logits, self.fc_class(cls_in), self.fc_stop(stop_in)[:, 0], new_states


def rsis_decode(decoder: RSISDecoder, skips: Sequence[Tensor], num_steps: int,
                out_size: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Run ``num_steps`` decoder steps; masks upsampled to ``out_size`` (align_corners=True,
    as the release's ``upsample_match``).

    Args:
        decoder: :class:`RSISDecoder`. skips: list of 5 (B, Cs_i, H_i, W_i).
        num_steps: T. out_size: (H, W), the network input size.

    Returns:
        mask_logits (B, T, H, W), class_logits (B, T, K1), stop_logits (B, T).
    """
    states = None
    masks, classes, stops = [], [], []
    for _ in range(num_steps):
        mask, cls, stop, states = decoder(skips, states)
        masks.append(upsample_align(mask, out_size)[:, 0])
        classes.append(cls)
        stops.append(stop)
    return torch.stack(masks, 1), torch.stack(classes, 1), torch.stack(stops, 1)
