"""ERFNet backbone: architecture (parameter count from the layer specification), shapes, errors."""
import pytest
import torch

from insplug.core.backbones.erfnet import ERFNet, NonBottleneck1d


def _down(cin, cout):  # strided 3x3 conv to cout - cin channels, BN over cout
    return (cout - cin) * cin * 9 + (cout - cin) + 2 * cout


def _block(c):  # four factorised 3-tap convs with bias, two BNs
    return 4 * (3 * c * c + c) + 2 * 2 * c


def _up(cin, cout):  # transposed 3x3 conv, BN
    return cin * cout * 9 + cout + 2 * cout


def test_parameter_count_matches_the_erfnet_specification():
    encoder = _down(3, 16) + _down(16, 64) + 5 * _block(64) + _down(64, 128) + 8 * _block(128)
    decoder = _up(128, 64) + 2 * _block(64) + _up(64, 16) + 2 * _block(16)
    for branches in (1, 2):
        model = ERFNet(num_branches=branches)
        assert sum(p.numel() for p in model.parameters()) == encoder + branches * decoder


def test_encoder_dilations_and_dropout_follow_erfnet():
    model = ERFNet()
    blocks = [m for m in model.encoder.layers if isinstance(m, NonBottleneck1d)]
    assert [b.conv3x1_2.dilation[0] for b in blocks] == [1] * 5 + [2, 4, 8, 16] * 2
    assert [b.dropout.p for b in blocks] == [0.03] * 5 + [0.3] * 8


def test_branch_outputs_at_stride_two_and_gradients_reach_the_input():
    model = ERFNet(num_branches=2).eval()
    x = torch.randn(1, 3, 32, 48, requires_grad=True)
    outs = model(x)
    assert len(outs) == 2 and all(o.shape == (1, 16, 16, 24) for o in outs)
    assert not torch.equal(outs[0], outs[1])  # independent decoders
    (outs[0].sum() + outs[1].sum()).backward()
    assert x.grad.abs().sum() > 0


def test_input_not_multiple_of_eight_names_the_fix():
    with pytest.raises(ValueError, match='pad_size_divisor'):
        ERFNet()(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match='num_branches'):
        ERFNet(num_branches=0)
