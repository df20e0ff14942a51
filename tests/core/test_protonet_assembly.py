"""ProtoNetEncoder (insplug.core.layers.protonet) and the mask-assembly helper
(insplug.core.prototypes.assembly)."""
import pytest
import torch

from insplug.core.layers.protonet import ProtoNetEncoder
from insplug.core.prototypes import assembly as A


def test_yolact_protonet_layout_and_shapes():
    net = ProtoNetEncoder(in_channels=16, feat_channels=8, num_protos=32)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    # 3 x conv3x3, conv3x3 after the upsampling, 1x1 to k
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 + [(1, 1)]
    assert convs[-1].out_channels == 32
    feats = (torch.randn(2, 16, 10, 12), torch.randn(2, 16, 5, 6))
    protos = net(feats)
    assert protos.shape == (2, 32, 20, 24)  # x2 of P3
    assert (protos >= 0).all()  # YOLACT's ReLU on the prototypes


def test_blendmask_bottom_module_fuses_levels():
    net = ProtoNetEncoder(in_channels=8, feat_channels=8, num_protos=4, in_levels=(0, 1, 2),
                          level_convs=True, norm='BN', proto_activation=None).eval()
    feats = [torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)]
    bases = net(feats)
    assert bases.shape == (1, 4, 32, 32) and (bases < 0).any()
    # changing a coarse level changes the bases: it is really fused in
    feats2 = [feats[0], feats[1], feats[2] + 1.0]
    assert not torch.allclose(net(feats2), bases)
    with pytest.raises(ValueError, match='level_convs'):
        ProtoNetEncoder(in_levels=(0, 1))
    with pytest.raises(ValueError, match='in_levels'):
        net(feats[:2])


def test_downsample_and_semantic_targets():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, :4, :4] = True
    gt[1, 4:, 4:] = True
    small = A.downsample_gt_masks(gt, (2, 2))
    assert small.tolist() == [[[1, 0], [0, 0]], [[0, 0], [0, 1]]]
    sem = A.semantic_targets_multilabel(gt, torch.tensor([1, 1]), 3, (2, 2))
    assert sem[1].tolist() == [[1, 0], [0, 1]] and sem[0].sum() == 0 and sem[2].sum() == 0
    assert A.downsample_gt_masks(torch.zeros(0, 8, 8), (2, 2)).shape == (0, 2, 2)
