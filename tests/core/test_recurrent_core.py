"""Shared recurrent core: ConvLSTM cell (gradcheck, nn.LSTMCell reference) and soft-IoU matching
(brute force over all permutations / injections)."""
import itertools

import pytest
import torch

from insplug.core.recurrent import (ConvLSTMCell, match_soft_iou, matched_soft_iou_loss,
                                    pairwise_soft_iou)


def test_convlstm_gradcheck():
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, kernel_size=3).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)

    def f(x, h, c):
        return cell(x, (h, c))

    assert torch.autograd.gradcheck(f, (x, h, c), eps=1e-6, atol=1e-5)
    # through the parameters too
    params = tuple(p for p in cell.parameters())

    def g(w, b):
        gates = torch.nn.functional.conv2d(torch.cat([x, h], 1), w, b, padding=1)
        from insplug.core.recurrent.convlstm import lstm_gates_update
        return lstm_gates_update(gates, c)

    assert torch.autograd.gradcheck(g, tuple(p.detach().requires_grad_() for p in params))


def test_convlstm_equals_lstmcell_at_1x1():
    """kernel 1 on a 1x1 map is a plain LSTM cell (torch gate order i, f, g, o; ours i, f, o, g)."""
    torch.manual_seed(1)
    cin, hid = 3, 4
    cell = ConvLSTMCell(cin, hid, kernel_size=1).double()
    ref = torch.nn.LSTMCell(cin, hid).double()
    w = cell.gates.weight.detach()[:, :, 0, 0]
    b = cell.gates.bias.detach()
    i, f, o, g = w.chunk(4, 0)
    bi, bf, bo, bg = b.chunk(4, 0)
    with torch.no_grad():
        ref.weight_ih.copy_(torch.cat([i, f, g, o], 0)[:, :cin])
        ref.weight_hh.copy_(torch.cat([i, f, g, o], 0)[:, cin:])
        ref.bias_ih.copy_(torch.cat([bi, bf, bg, bo]))
        ref.bias_hh.zero_()
    x = torch.randn(5, cin, dtype=torch.float64)
    h0 = torch.randn(5, hid, dtype=torch.float64)
    c0 = torch.randn(5, hid, dtype=torch.float64)
    h, c = cell(x[:, :, None, None], (h0[:, :, None, None], c0[:, :, None, None]))
    h_ref, c_ref = ref(x, (h0, c0))
    torch.testing.assert_close(h[:, :, 0, 0], h_ref)
    torch.testing.assert_close(c[:, :, 0, 0], c_ref)
    # zero initial state when none is given
    h, c = cell(x[:, :, None, None])
    h_ref, c_ref = ref(x)
    torch.testing.assert_close(h[:, :, 0, 0], h_ref)
    assert cell.gates.padding == (0, 0)


def _brute_force(probs, gts, num_steps):
    """Minimum over every injection of the (first num_steps) predictions into the GTs (or the
    reverse when there are fewer GTs) of the summed 1 - soft IoU, computed pair by pair."""
    probs = probs[:num_steps]
    t, m = probs.shape[0], gts.shape[0]

    def cost(i, j):
        p, y = probs[i], gts[j]
        return 1 - (p * y).sum() / ((p + y - p * y).sum() + 1e-6)

    best = None
    if t <= m:
        for perm in itertools.permutations(range(m), t):
            total = sum(cost(i, j) for i, j in enumerate(perm))
            best = total if best is None or total < best else best
    else:
        for perm in itertools.permutations(range(t), m):
            total = sum(cost(i, j) for j, i in enumerate(perm))
            best = total if best is None or total < best else best
    return best


@pytest.mark.parametrize('t,m,num_steps', [(4, 4, None), (5, 3, None), (3, 5, None),
                                           (5, 3, 3), (6, 4, 2)])
def test_matched_loss_brute_force(t, m, num_steps):
    g = torch.Generator().manual_seed(t * 10 + m)
    probs = torch.rand(t, 30, generator=g, dtype=torch.float64)
    gts = (torch.rand(m, 30, generator=g) > 0.6).double()
    losses, pi, gi = matched_soft_iou_loss(probs, gts, num_steps=num_steps)
    k = min(t if num_steps is None else num_steps, m)
    assert losses.shape == (k,) and len(set(pi.tolist())) == k and len(set(gi.tolist())) == k
    if num_steps is not None:
        assert pi.max() < num_steps
    ref = _brute_force(probs, gts, t if num_steps is None else num_steps)
    torch.testing.assert_close(losses.sum(), ref)


def test_pairwise_soft_iou_hand_worked():
    probs = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    gts = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    iou = pairwise_soft_iou(probs, gts, eps=0.0)
    torch.testing.assert_close(iou, torch.tensor([[1.5 / 2.0, 0.0]]))
    pi, gi = match_soft_iou(probs, gts)
    assert pi.tolist() == [0] and gi.tolist() == [0]


def test_matched_loss_gradient_and_empty():
    probs = torch.rand(3, 8, dtype=torch.float64, requires_grad=True)
    gts = (torch.rand(2, 8) > 0.5).double()
    losses, _, _ = matched_soft_iou_loss(probs, gts)
    losses.sum().backward()
    assert probs.grad is not None and torch.isfinite(probs.grad).all()
    losses, pi, gi = matched_soft_iou_loss(probs, gts[:0])
    assert losses.numel() == 0 and pi.numel() == 0
