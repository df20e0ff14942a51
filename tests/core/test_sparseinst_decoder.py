"""IAM decoder (plain, group 1/2/4/8, softmax) and the instance context encoder (the CoordConv
coordinates are checked against the release in tests/parity/test_sparseinst_parity.py)."""
import pytest
import torch
import torch.nn.functional as F

from insplug.core.sparseinst.decoder import (IAMDecoder, InstanceBranch, kernel_masks,
                                             merge_groups)
from insplug.core.sparseinst.encoder import InstanceContextEncoder


def reference_instance_branch(branch, feats, groups, softmax=False):
    """Per instance and per group, written as explicit loops."""
    x = branch.inst_convs(feats)
    iam = branch.iam_conv(x)
    b, c, h, w = x.shape
    n = branch.num_masks
    out_cls = torch.zeros(b, n, branch.num_classes, dtype=x.dtype)
    out_obj = torch.zeros(b, n, 1, dtype=x.dtype)
    for bi in range(b):
        for i in range(n):
            parts = []
            for g in range(groups):
                logits = iam[bi, g * n + i].flatten()
                if softmax:
                    weights = torch.softmax(logits + branch.softmax_bias, 0)
                else:
                    weights = logits.sigmoid() / logits.sigmoid().sum().clamp(min=1e-6)
                parts.append((x[bi].flatten(1) * weights).sum(1))
            feat = torch.cat(parts)
            if branch.fc is not None:
                feat = F.relu(branch.fc(feat))
            out_cls[bi, i] = branch.cls_score(feat)
            out_obj[bi, i] = branch.objectness(feat)
    return out_cls, out_obj, iam


@pytest.mark.parametrize('groups', [1, 2, 4, 8])
def test_group_iam_against_loops(groups):
    torch.manual_seed(groups)
    branch = InstanceBranch(6, num_classes=3, num_masks=5, dim=16, num_convs=1, kernel_dim=4,
                            iam_type='group', groups=groups).double()
    with torch.no_grad():  # spread the IAM logits so that the weighting matters
        branch.iam_conv.weight.normal_(std=0.5)
    feats = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    cls, kernels, obj, iam = branch(feats)
    assert cls.shape == (2, 5, 3) and kernels.shape == (2, 5, 4) and obj.shape == (2, 5, 1)
    assert iam.shape == (2, 5 * groups, 5, 7)
    assert branch.fc.in_features == 16 * groups
    ref_cls, ref_obj, _ = reference_instance_branch(branch, feats, groups)
    torch.testing.assert_close(cls, ref_cls)
    torch.testing.assert_close(obj, ref_obj)


def test_softmax_and_base_variants_against_loops():
    torch.manual_seed(0)
    soft = InstanceBranch(6, 3, num_masks=4, dim=8, num_convs=1, kernel_dim=4,
                          iam_type='group_softmax', groups=2).double()
    feats = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(soft(feats)[0], reference_instance_branch(soft, feats, 2, True)[0])
    base = InstanceBranch(6, 3, num_masks=4, dim=8, num_convs=1, kernel_dim=4, iam_type='base',
                          groups=1).double()
    assert base.fc is None
    torch.testing.assert_close(base(feats)[0], reference_instance_branch(base, feats, 1)[0])
    with pytest.raises(ValueError, match='groups=1'):
        InstanceBranch(6, 3, iam_type='base', groups=4)
    with pytest.raises(ValueError, match='divide'):
        InstanceBranch(6, 3, dim=10, groups=4)


def test_merge_groups_layout():
    x = torch.arange(6 * 3).reshape(1, 6, 3)  # G=2 groups of N=3 maps, C=3 channels
    out = merge_groups(x, 2)
    assert out.shape == (1, 3, 6)
    for i in range(3):
        assert out[0, i].tolist() == x[0, i].tolist() + x[0, 3 + i].tolist()


def test_kernel_masks_and_decoder_outputs():
    k, f = torch.randn(2, 3, 4), torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(kernel_masks(k, f), torch.einsum('bnd,bdhw->bnhw', k, f))
    dec = IAMDecoder(16, num_classes=5, num_masks=7, groups=4, inst_dim=16, inst_convs=1,
                     mask_dim=16, mask_convs=1, kernel_dim=8, output_iam=True)
    out = dec(torch.randn(2, 16, 5, 9))
    assert out['cls_logits'].shape == (2, 7, 5) and out['obj_logits'].shape == (2, 7, 1)
    assert out['mask_logits'].shape == (2, 7, 10, 18)  # upsampled x2
    assert out['iam'].shape == (2, 28, 10, 18)
    # initial class probability is the focal prior 0.01
    assert dec.inst_branch.cls_score.bias.sigmoid()[0].item() == pytest.approx(0.01)
    assert IAMDecoder(16, 5, iam_type='base', inst_dim=16).inst_branch.groups == 1
    with pytest.raises(ValueError, match='in_channels'):
        dec(torch.randn(1, 8, 4, 4))


def test_encoder_fuses_to_stride_8():
    enc = InstanceContextEncoder((8, 16, 32), out_channels=12)
    feats = [torch.randn(2, 8, 12, 10), torch.randn(2, 16, 6, 5), torch.randn(2, 32, 3, 3)]
    out = enc(feats)
    assert out.shape == (2, 12, 12, 10)
    out.mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    with pytest.raises(ValueError, match='in_channels'):
        enc([feats[0], feats[1], torch.randn(2, 8, 3, 3)])
    with pytest.raises(ValueError, match='three levels'):
        InstanceContextEncoder((8, 16))
