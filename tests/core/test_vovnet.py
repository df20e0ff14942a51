"""VoVNetV2: OSA/eSE maths by hand and the stage layout of the published architectures."""
import torch
from torch import nn

from insplug.core.backbones.vovnet import OSAModule, VoVNetV2, effective_se, hard_sigmoid


def test_hard_sigmoid_and_ese_by_hand():
    assert torch.allclose(hard_sigmoid(torch.tensor([-4.0, -3.0, 0.0, 1.5, 3.0, 9.0])),
                          torch.tensor([0.0, 0.0, 0.5, 0.75, 1.0, 1.0]))
    x = torch.arange(8.0).view(1, 2, 2, 2)  # channel means 1.5 and 5.5
    fc = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]).view(2, 2, 1, 1))
        fc.bias.zero_()
    # gates: hsig(1.5) = 0.75, hsig(-5.5) = 0
    expected = torch.cat([x[:, :1] * 0.75, x[:, 1:] * 0.0], 1)
    assert torch.allclose(effective_se(x, fc), expected)


def test_osa_identity_adds_input():
    torch.manual_seed(0)
    m = OSAModule(8, 4, 8, 3, identity=True, norm_layer=nn.BatchNorm2d).eval()
    plain = OSAModule(8, 4, 8, 3, identity=False, norm_layer=nn.BatchNorm2d).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(m(x), plain(x) + x)
    assert m.concat[0].in_channels == 8 + 3 * 4


def count_blocks(net):
    return [sum(isinstance(c, OSAModule) for c in s) for s in net.stages]


def test_architectures_shapes_and_block_counts():
    v39 = VoVNetV2('V-39')
    assert count_blocks(v39) == [1, 1, 2, 2]
    with torch.device('meta'):  # layout only: skip weight initialisation
        assert count_blocks(VoVNetV2('V-57')) == [1, 1, 4, 3]
    outs = v39.eval()(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 24), (1, 512, 8, 12),
                                              (1, 768, 4, 6), (1, 1024, 2, 3)]
    # only the non-first modules of a stage carry the identity mapping
    assert [[m.identity for m in s if isinstance(m, OSAModule)] for s in v39.stages] == \
        [[False], [False], [False, True], [False, True]]
    try:
        VoVNetV2('V-40')
    except ValueError as err:
        assert 'arch' in str(err)
    else:
        raise AssertionError('unknown arch accepted')
