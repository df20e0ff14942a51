"""Convolutional LSTM cell, as RSIS's release defines it (imatge-upc/rsis, src/modules/clstm.py).

Shapes: B images, C_in input channels, C hidden channels, H x W the cell's spatial size.

One convolution ``gates`` maps ``cat([x, h_prev], 1)`` (B, C_in + C, H, W) to the four gate
pre-activations (B, 4C, H, W), split along channels in the order input, forget ("remember"),
output, cell candidate. Then ``c = f * c_prev + i * g`` and ``h = o * tanh(c)``. The state
starts at zeros (hidden and cell) when none is given. No peephole connections, no normalisation.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

State = Tuple[Tensor, Tensor]


def lstm_gates_update(gates: Tensor, prev_cell: Tensor) -> State:
    """LSTM state update from the gate pre-activations.

    Args:
        gates: (B, 4C, H, W) pre-activations, channel blocks in the order
            input, forget, output, cell candidate.
        prev_cell: (B, C, H, W).

    Returns:
        (hidden, cell): two (B, C, H, W) tensors.
    """
    in_gate, forget_gate, out_gate, cell_gate = gates.chunk(4, 1)
    cell = torch.sigmoid(forget_gate) * prev_cell + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
    hidden = torch.sigmoid(out_gate) * torch.tanh(cell)
    return hidden, cell


def zero_state(x: Tensor, hidden_channels: int) -> State:
    """Zero hidden and cell state for input ``x``.

    Args:
        x: (B, C_in, H, W). hidden_channels: C.

    Returns:
        (hidden, cell): two (B, C, H, W) zero tensors of x's dtype and device.
    """
    shape = (x.shape[0], hidden_channels) + tuple(x.shape[2:])
    return x.new_zeros(shape), x.new_zeros(shape)


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell: one ``gates`` conv over ``cat([x, h_prev])``.

    Args:
        in_channels: C_in. hidden_channels: C.
        kernel_size: gate convolution kernel (RSIS: 3).
        padding: gate convolution padding; None = ``kernel_size // 2`` (RSIS uses
            ``0 if kernel_size == 1 else 1``: the same for its kernels 1 and 3).
        bias: gate convolution bias (RSIS: True).

    forward(x (B, C_in, H, W), state=None or (h, c) each (B, C, H, W)) -> (h, c) each (B, C, H, W).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 padding: Optional[int] = None, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        padding = kernel_size // 2 if padding is None else padding
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=padding, bias=bias)

    def forward(self, x: Tensor, state: Optional[State] = None) -> State:
        if state is None:
            state = zero_state(x, self.hidden_channels)
        prev_hidden, prev_cell = state
        gates = self.gates(torch.cat([x, prev_hidden], 1))
        return lstm_gates_update(gates, prev_cell)
