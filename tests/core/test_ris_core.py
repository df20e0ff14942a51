"""RIS core against independent references: the release's MatchCriterion written out literally
(brute force over assignments, its hand-written gradient), the Lua ConvLSTM's two summed
convolutions, the softmax-shifted mask and the stop rule (hand-worked)."""
import itertools

import torch
import torch.nn.functional as F

from insplug.core.ris import (RISRecurrentHead, pixel_log_softmax, ris_decode, ris_loss_single,
                              ris_postprocess, ris_train_steps)


def match_criterion_reference(q, s, y, lam):
    """MatchCriterion.updateOutput: q (P, T) probs, s (T,) confidences, y (P, M); cost
    M[i][j] = -iou + lam * BCE(s_i, 1) for i < min(T, M) (other rows 0), minimum over all
    assignments of rows to the M columns, plus lam * BCE(s_i, 0) for i >= M."""
    t, m = q.shape[1], y.shape[1]

    def iou(a, b):
        inter = (a * b).sum()
        return inter / (a.sum() + b.sum() - inter)

    bce = lambda p, target: -(target * torch.log(p) + (1 - target) * torch.log(1 - p))  # noqa
    cost = torch.zeros(m, m, dtype=q.dtype)
    for i in range(min(t, m)):
        for j in range(m):
            cost[i, j] = -iou(q[:, i], y[:, j]) + lam * bce(s[i], 1.0)
    best = min(sum(cost[i, perm[i]] for i in range(m)) for perm in itertools.permutations(range(m)))
    return best + sum(lam * bce(s[i], 0.0) for i in range(m, t))


def test_ris_loss_brute_force():
    g = torch.Generator().manual_seed(0)
    for t, m in ((4, 3), (2, 4), (3, 3), (1, 0)):
        probs = torch.rand(t, 20, generator=g, dtype=torch.float64) * 0.98 + 0.01
        conf = torch.randn(t, generator=g, dtype=torch.float64)
        gts = (torch.rand(m, 20, generator=g) > 0.5).double()
        for lam in (1.0, 0.3):
            loss, _, _ = ris_loss_single(probs, conf, gts, lam=lam)
            ref = match_criterion_reference(probs.t(), torch.sigmoid(conf), gts.t(), lam) / t
            torch.testing.assert_close(loss, torch.as_tensor(ref, dtype=torch.float64))


def test_ris_loss_gradient_matches_release_formula():
    """MatchCriterion.updateGradInput's mask gradient: -(U y - (1 - y) I) / U^2 per matched
    step (I = q.y, U = sum q + sum y - I), divided by T like the loss."""
    g = torch.Generator().manual_seed(1)
    t, m = 3, 2
    probs = (torch.rand(t, 16, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    conf = torch.randn(t, generator=g, dtype=torch.float64)
    gts = (torch.rand(m, 16, generator=g) > 0.5).double()
    loss, pi, gi = ris_loss_single(probs, conf, gts)
    loss.backward()
    for i, j in zip(pi.tolist(), gi.tolist()):
        q, y = probs[i].detach(), gts[j]
        inter = (q * y).sum()
        union = q.sum() + y.sum() - inter
        ref = -(union * y - (1 - y) * inter) / union ** 2 / t
        torch.testing.assert_close(probs.grad[i], ref)
    assert torch.all(probs.grad[m:] == 0)


def test_convlstm_equals_lua_two_convolutions():
    """The Lua cell sums i2h(x) and h2h(h_prev); ours convolves cat(x, h_prev)."""
    torch.manual_seed(2)
    head = RISRecurrentHead(3, rnn_size=4, rnn_layers=2, feat_size=(5, 6)).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    states = [(torch.randn(2, 4, 5, 6, dtype=torch.float64),
               torch.randn(2, 4, 5, 6, dtype=torch.float64)) for _ in range(2)]
    _, _, _, new = head(x, states)
    inp = x
    for layer, (h, c) in zip(head.cells, states):
        w, b = layer.gates.weight, layer.gates.bias
        cin = inp.shape[1]
        sums = (F.conv2d(inp, w[:, :cin], b / 2, padding=1)
                + F.conv2d(h, w[:, cin:], b / 2, padding=1))
        i, f, o, gg = sums.chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        inp = h_new
    torch.testing.assert_close(new[-1][0], h_new)
    torch.testing.assert_close(new[-1][1], c_new)


def test_mask_is_shifted_pixel_softmax_and_release_init():
    torch.manual_seed(3)
    head = RISRecurrentHead(2, rnn_size=3, rnn_layers=1, feat_size=(4, 4)).double()
    assert float(head.mask_bias) == 1.0 and float(head.conf_fc.bias) == 10.0
    c = head.cells[0].hidden_channels
    assert torch.all(head.cells[0].gates.bias[:3 * c] > 0.8)
    assert torch.all(head.cells[0].gates.bias[3 * c:].abs() <= 0.16)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    masks, conf, cls = ris_decode(head, x, 3)
    assert masks.shape == (1, 3, 4, 4) and conf.shape == (1, 3) and cls is None
    # exp(mask_logit - b) is a distribution over the 16 pixels at every step
    torch.testing.assert_close(torch.exp(masks - 1.0).sum((2, 3)),
                               torch.ones(1, 3, dtype=torch.float64))
    torch.testing.assert_close(pixel_log_softmax(torch.zeros(1, 2, 2)),
                               torch.full((1, 2, 2), -torch.log(torch.tensor(4.0)).item()))


def test_stop_rule_and_steps():
    probs = torch.rand(5, 3, 3)
    conf = torch.tensor([3.0, 1.0, -1.0, 2.0, 2.0])  # third step below 0.5: stop there
    masks, scores, labels = ris_postprocess(probs, conf)
    assert masks.shape[0] == 2
    torch.testing.assert_close(scores, torch.sigmoid(conf[:2]))
    assert torch.equal(masks, probs[:2] > 0.9) and labels.tolist() == [0, 0]
    cls = torch.tensor([[0.0, 2.0]] * 5)
    _, scores, labels = ris_postprocess(probs, conf, cls)
    assert labels.tolist() == [1, 1]
    assert ris_train_steps(3, 40) == 4 and ris_train_steps(50, 40) == 40
