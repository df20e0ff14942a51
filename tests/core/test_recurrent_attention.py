"""Recurrent attention core against independent references: the Gaussian filter bank against a
brute-force evaluation of the release's formula, patch extraction against explicit sums, the
extract / paste adjoint identity and round trip, gradient checks, hand-worked GT boxes, score
loss, stop rule, one-label output and knob schedule, matching against brute force over
permutations (first M steps only, as released)."""
import itertools
import math

import pytest
import torch

from insplug.core.recurrent_attention import (RecurrentAttentionNet, extract_patch,
                                              gaussian_filter_bank, greedy_match,
                                              gt_boxes_from_masks, instances_from_steps,
                                              knob_probability, matched_iou_loss,
                                              normalize_attention, paste_patch, score_loss,
                                              soft_attention_box, stop_mask,
                                              unnormalize_attention)


def brute_filter(ctr, size, lg_var, length, num):
    """The release's get_gaussian_filter, written out with math per entry."""
    var = math.exp(lg_var)
    out = torch.zeros(length, num, dtype=torch.float64)
    for j in range(num):
        mu = ctr + (size + 1) / num * (j - (num - 1) / 2.0)
        for i in range(length):
            out[i, j] = math.exp(-0.5 * (i - mu) ** 2 / var) / math.sqrt(var) / \
                math.sqrt(2 * math.pi)
    return out


def test_filter_bank_matches_formula():
    ctr = torch.tensor([3.3, 7.0], dtype=torch.float64)
    size = torch.tensor([5.0, 2.5], dtype=torch.float64)
    lg_var = torch.tensor([0.4, -0.7], dtype=torch.float64)
    bank = gaussian_filter_bank(ctr, size, lg_var, 11, 4)
    assert bank.shape == (2, 11, 4)
    for b in range(2):
        ref = brute_filter(ctr[b].item(), size[b].item(), lg_var[b].item(), 11, 4)
        torch.testing.assert_close(bank[b], ref, rtol=1e-12, atol=1e-14)


def test_extract_and_paste_explicit_sums_and_adjoint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=g)
    fy = torch.rand(2, 7, 4, dtype=torch.float64, generator=g)
    fx = torch.rand(2, 9, 5, dtype=torch.float64, generator=g)
    patch = extract_patch(x, fy, fx)
    ref = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    for b, c, p, q in itertools.product(range(2), range(3), range(4), range(5)):
        ref[b, c, p, q] = sum(fy[b, h, p] * x[b, c, h, w] * fx[b, w, q]
                              for h in range(7) for w in range(9))
    torch.testing.assert_close(patch, ref)
    # paste is the adjoint (transpose) of extract: <extract(x), p> = <x, paste(p)>
    p = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g)
    lhs = (extract_patch(x, fy, fx) * p).sum()
    rhs = (x * paste_patch(p, fy, fx)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_extract_paste_round_trip_identity_window():
    """A window of stride 1 over the whole image with a tiny variance: every filter is a scaled
    delta, so paste(extract(x)) = c^4 x with c = 1 / sqrt(2 pi var)."""
    length = 8
    x = torch.randn(1, 2, length, length, dtype=torch.float64)
    var = 0.02
    ctr = torch.full((1,), (length - 1) / 2, dtype=torch.float64)
    size = torch.full((1,), float(length - 1), dtype=torch.float64)
    lg = torch.full((1,), math.log(var), dtype=torch.float64)
    f = gaussian_filter_bank(ctr, size, lg, length, length)
    c = 1 / math.sqrt(2 * math.pi * var)
    torch.testing.assert_close(paste_patch(extract_patch(x, f, f), f, f) / c ** 4, x,
                               rtol=1e-8, atol=1e-8)


def test_gradients():
    g = torch.Generator().manual_seed(1)
    ctr = (torch.rand(2, dtype=torch.float64, generator=g) * 6).requires_grad_()
    size = (torch.rand(2, dtype=torch.float64, generator=g) * 4 + 2).requires_grad_()
    lg_var = torch.randn(2, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: gaussian_filter_bank(a, b, c, 8, 3),
                                    (ctr, size, lg_var))
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=g, requires_grad=True)

    def read_write(x, ctr, size, lg_var):
        fy = gaussian_filter_bank(ctr, size, lg_var, 8, 3)
        return paste_patch(extract_patch(x, fy, fy).tanh(), fy, fy)
    assert torch.autograd.gradcheck(read_write, (x, ctr, size, lg_var))
    scores = torch.rand(2, 5, dtype=torch.float64, generator=g).clamp(0.05, 0.95)
    scores.requires_grad_()
    targets = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: score_loss(s, targets, True), (scores,))
    probs = torch.rand(1, 3, 20, dtype=torch.float64, generator=g, requires_grad=True)
    gt = [(torch.rand(2, 20, generator=g) > 0.5).double()]
    assert torch.autograd.gradcheck(lambda p: matched_iou_loss(p, gt)[0], (probs,))


def test_attention_parameterisation_round_trip():
    ctr_n = torch.tensor([[-0.3, 0.5]])
    lg = torch.tensor([[-1.2, -0.4]])
    ctr, size = unnormalize_attention(ctr_n, lg, 20, 30)
    torch.testing.assert_close(ctr, torch.tensor([[7.0, 22.5]]))
    torch.testing.assert_close(size, torch.tensor([[20 * math.exp(-1.2), 30 * math.exp(-0.4)]]))
    back = normalize_attention(ctr, size, 20, 30)
    torch.testing.assert_close(back[0], ctr_n)
    torch.testing.assert_close(back[1], lg)


def test_soft_box_is_paste_of_ones():
    g = torch.Generator().manual_seed(2)
    fy = torch.rand(2, 6, 3, generator=g)
    fx = torch.rand(2, 7, 4, generator=g)
    lg = torch.tensor([0.3, -0.2])
    ref = torch.sigmoid(torch.exp(lg).view(-1, 1, 1) *
                        paste_patch(torch.ones(2, 1, 3, 4), fy, fx)[:, 0] - 5.0)
    torch.testing.assert_close(soft_attention_box(fy, fx, lg), ref)


def test_gt_boxes_hand_worked():
    masks = torch.zeros(1, 2, 10, 10)
    masks[0, 0, 2:5, 3:7] = 1  # rows 2..4, cols 3..6: size (2, 3)
    tl, br, box = gt_boxes_from_masks(masks, padding_ratio=0.5, min_padding=1.0)
    # pad = max(0.5 * (2, 3), 1) = (1, 1.5)
    torch.testing.assert_close(tl[0, 0], torch.tensor([1.0, 1.5]))
    torch.testing.assert_close(br[0, 0], torch.tensor([5.0, 7.5]))
    ref = torch.zeros(10, 10)
    ref[1:6, 2:8] = 1
    torch.testing.assert_close(box[0, 0], ref)
    # empty slot: corner box (0, 0)-(2, 2), filled box empty (as released)
    torch.testing.assert_close(tl[0, 1], torch.zeros(2))
    torch.testing.assert_close(br[0, 1], torch.full((2,), 2.0))
    assert box[0, 1].sum() == 0
    # centre shift moves both corners by ratio * size
    tl2, br2, _ = gt_boxes_from_masks(masks[:, :1], 0.5, torch.tensor([[[0.5, -1.0]]]), 1.0)
    torch.testing.assert_close(tl2[0, 0], torch.tensor([2.0, -1.5]))
    torch.testing.assert_close(br2[0, 0], torch.tensor([6.0, 4.5]))


def test_score_loss_hand_worked():
    s = torch.tensor([[0.9, 0.6, 0.7, 0.2]], dtype=torch.float64)
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    eps = 1e-5
    # cumulative min (0.9, 0.6, 0.6, 0.2); reversed cumulative max (0.9, 0.7, 0.7, 0.2)
    ref = -(math.log(0.9 + eps) + math.log(0.6 + eps) + math.log(1 - 0.7 + eps) +
            math.log(1 - 0.2 + eps)) / 4
    assert abs(score_loss(s, t).item() - ref) < 1e-12
    plain = -(math.log(0.9 + eps) + math.log(0.6 + eps) + math.log(0.3 + eps) +
              math.log(0.8 + eps)) / 4
    assert abs(score_loss(s, t, use_cum_min=False).item() - plain) < 1e-12


def soft_iou(a, b, eps):
    return (a * b).sum() / ((a + b - a * b + eps).sum())


def test_matching_first_m_steps_brute_force():
    g = torch.Generator().manual_seed(3)
    pix = 12
    gt = (torch.rand(3, pix, generator=g) > 0.5).double()
    probs = torch.rand(5, pix, dtype=torch.float64, generator=g) * 0.8
    probs[4] = gt[0]  # a perfect step beyond M = 3: the release never matches it
    loss, matches = matched_iou_loss(probs[None], [gt])
    best, best_perm = -1.0, None
    for perm in itertools.permutations(range(3)):  # steps 0..2 -> GTs perm
        total = sum(soft_iou(probs[t], gt[perm[t]], 1e-5).item() for t in range(3))
        if total > best:
            best, best_perm = total, perm
    step_idx, gt_idx = matches[0]
    assert step_idx.tolist() == [0, 1, 2]
    assert gt_idx.tolist() == list(best_perm)
    assert abs(loss.item() - (3 - best) / 3) < 1e-10
    # an image without instances adds 0; the batch mean divides by B
    loss2, _ = matched_iou_loss(torch.cat([probs[None], probs[None]]),
                                [gt, torch.zeros(0, pix, dtype=torch.float64)])
    assert abs(loss2.item() - loss.item() / 2) < 1e-10


def test_greedy_match_and_knob():
    score = torch.tensor([[0.2, 0.7, 0.7, 0.1], [0.5, 0.9, 0.1, 0.0]])
    matched = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(greedy_match(score, matched),
                               torch.tensor([[0, 0.5, 0.5, 0], [1.0, 0, 0, 0]]))
    # CVPPP segmentation knob: base 1, decay 0.5 per 700, offset 3000
    p = knob_probability(3700, 3, 1.0, 0.5, 700, 3000, use_timescale=False)
    torch.testing.assert_close(p, torch.full((3,), 0.5))
    p = knob_probability(4400, 3, 1.0, 0.5, 700, 3000, use_timescale=True)
    ref = [min(1.0, 0.25 * (1 + math.log(1 + 3 * t))) for t in range(3)]
    torch.testing.assert_close(p, torch.tensor(ref))
    assert knob_probability(100, 2, 1.0, 0.5, 700, 3000).tolist() == [1.0, 1.0]


def test_stop_rule_hand_worked():
    s = torch.tensor([0.9, 0.4, 0.8, 0.6])
    assert stop_mask(s).tolist() == [True, False, True, True]
    assert stop_mask(s, stop_rule='first_below').tolist() == [True, False, False, False]
    with pytest.raises(ValueError):
        stop_mask(s, stop_rule='other')


def test_instances_one_label_hand_worked():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 0.9   # rows 0-1
    masks[1, 1:3] = 0.8  # rows 1-2, overlaps row 1
    masks[2] = 0.95      # everywhere, but its score is below 0.5
    scores = torch.tensor([0.6, 0.9, 0.3])
    out_masks, out_scores, labels = instances_from_steps(masks, scores)
    # weighted: step0 0.54, step1 0.72, step2 0.285 -> row 1 goes to step 1; row 3: step 2
    # (not an instance); rows 0 / 1-2 above 0.3
    ref0 = torch.zeros(4, 4, dtype=torch.bool)
    ref0[0] = True
    ref1 = torch.zeros(4, 4, dtype=torch.bool)
    ref1[1:3] = True
    assert out_masks.shape == (2, 4, 4)
    assert torch.equal(out_masks[0], ref0) and torch.equal(out_masks[1], ref1)
    torch.testing.assert_close(out_scores, torch.tensor([0.6, 0.9]))
    assert labels.tolist() == [0, 0]
    # upsampled to the output size before the one-label step and the threshold
    up, _, _ = instances_from_steps(masks, scores, out_size=(8, 8))
    assert up.shape == (2, 8, 8)
    # a kept step is an instance even with an empty mask (release: counted by score > 0.5)
    masks[0] = 0.1
    empty, s2, _ = instances_from_steps(masks, scores)
    assert empty.shape == (2, 4, 4) and not empty[0].any() and s2.tolist() == pytest.approx(
        [0.6, 0.9])


def tiny_net(**kw):
    cfg = dict(input_size=(32, 32), timespan=3, filter_size=(8, 8),
               ctrl_cnn_filter_size=(3, 3), ctrl_cnn_depth=(4, 4), ctrl_cnn_pool=(2, 2),
               ctrl_rnn_hid_dim=8, num_ctrl_rnn_iter=2, ctrl_mlp_dim=8,
               attn_cnn_filter_size=(3, 3), attn_cnn_depth=(4, 4), attn_cnn_pool=(2, 2),
               attn_dcnn_filter_size=(3, 3), attn_dcnn_depth=(4, 1), attn_dcnn_pool=(2, 2),
               min_box_padding=2.0)
    cfg.update(kw)
    return RecurrentAttentionNet(**cfg)


def test_network_per_step_batch_norm_and_canvas():
    torch.manual_seed(0)
    net = tiny_net(add_skip_conn=True, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out['masks'].shape == (2, 3, 32, 32) and out['scores'].shape == (2, 3)
    assert out['cls_logits'].shape == (2, 3, 3)
    # one set of running statistics per time step, each updated once by the forward
    norms = net.ctrl_cnn.norms[0].norms
    assert len(norms) == 3
    assert all(int(n.num_batches_tracked) == 1 for n in norms)
    assert not torch.equal(norms[0].running_mean, norms[1].running_mean)
    # the canvas is the running max of the masks: the disable_overwrite output of a step is
    # zero wherever an earlier step was 1
    net.eval()
    net.disable_overwrite = True
    out = net(x)
    assert (out['masks'] <= 1).all() and (out['masks'] >= 0).all()
    with pytest.raises(ValueError):
        net(torch.randn(1, 3, 16, 16))


def test_network_box_stage_and_teacher():
    torch.manual_seed(0)
    net = tiny_net(stage='box')
    masks = torch.zeros(1, 2, 32, 32)
    masks[0, 0, 2:10, 3:12] = 1
    masks[0, 1, 15:30, 15:25] = 1
    teacher = net.make_teacher(masks, torch.ones(1, 3), torch.ones(1, 3))
    out = net(torch.randn(1, 3, 32, 32), teacher=teacher)
    assert out['masks'] is None and out['scores'].shape == (1, 3)
    assert out['attn_box'].shape == (1, 3, 32, 32)
    # full stage with the box knob on: the window is the fed GT box (greedy match), noisy
    net = tiny_net(gt_box_ctr_noise=0.0, gt_box_pad_noise=0.0)
    teacher = net.make_teacher(masks, torch.ones(1, 3), torch.zeros(1, 3))
    out = net(torch.randn(1, 3, 32, 32), teacher=teacher)
    ctr0 = out['ctr'][0, 0]
    fed = [(teacher['ctr_noisy'][0, m]) for m in range(2)]
    assert any(torch.allclose(ctr0, c) for c in fed)


def test_corner_box_iou_hand_worked():
    from insplug.core.recurrent_attention import corner_box_iou
    tl = torch.tensor([[[0.0, 0.0]]])
    br = torch.tensor([[[2.0, 2.0]]])
    gt_tl = torch.tensor([[[1.0, 1.0], [5.0, 5.0]]])
    gt_br = torch.tensor([[[3.0, 3.0], [6.0, 7.0]]])
    torch.testing.assert_close(corner_box_iou(tl, br, gt_tl, gt_br),
                               torch.tensor([[1 / 7, 0.0]]))
