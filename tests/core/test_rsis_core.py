"""RSIS core: inference selection (hand-worked), stop targets (the release's sw_mask / sw_class
rule), decoder shapes on odd sizes."""
import torch

from insplug.core.rsis import (RSISDecoder, RSISSkips, rsis_decode, rsis_postprocess,
                               stop_targets, train_num_steps)


def test_stop_targets_release_rule():
    targets, valid = stop_targets([2, 0, 3], 4, max_gt=3)
    assert targets.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    # end step supervised only when M < max_gt (the release's end token)
    assert valid.tolist() == [[True, True, True, False], [True, False, False, False],
                              [True, True, True, False]]
    assert train_num_steps([2, 0, 3], 10) == 4 and train_num_steps([2, 5], 3) == 3


def test_postprocess_hand_worked():
    probs = torch.zeros(3, 10, 10)
    probs[0, :5] = 0.9        # 50 px
    probs[1, :, :2] = 0.8     # 20 px, low objectness: skipped, not a stop
    probs[2, 0, 0] = 0.9      # 1 px < 0.001 * 100? no: 1 >= 0.1 -> kept
    cls = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.1, 0.1, 0.8], [0.2, 0.4, 0.4]]))
    stop = torch.logit(torch.tensor([0.9, 0.4, 0.5]))
    masks, scores, labels = rsis_postprocess(probs, cls, stop)
    expected = sorted([(0.6 * 0.9, 0, 0), (0.3 * 0.9, 1, 0), (0.4 * 0.5, 0, 2),
                       (0.4 * 0.5, 1, 2)], key=lambda x: -x[0])
    torch.testing.assert_close(scores, torch.tensor([e[0] for e in expected]))
    assert labels.tolist() == [e[1] for e in expected]
    assert torch.equal(masks[0], probs[0] > 0.5) and torch.equal(masks[-1], probs[2] > 0.5)
    _, scores, _ = rsis_postprocess(probs, cls, stop, min_size=0.02)  # drops the 1 px mask
    assert len(scores) == 2


def test_decoder_shapes_odd_sizes():
    torch.manual_seed(0)
    skips = RSISSkips([16, 8, 8, 4, 4], hidden_size=16)
    dec = RSISDecoder(16, num_classes=3)
    feats = [torch.randn(2, c, s[0], s[1]) for c, s in
             zip([16, 8, 8, 4, 4], [(2, 3), (4, 5), (7, 10), (13, 20), (25, 40)])]
    m, c, s = rsis_decode(dec, skips(feats), 3, (50, 80))
    assert m.shape == (2, 3, 50, 80) and c.shape == (2, 3, 3) and s.shape == (2, 3)
    # the states carry over: later steps differ from the first
    assert not torch.allclose(m[:, 0], m[:, 1])
