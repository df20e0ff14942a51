"""Semantic-segmentation components: shapes at odd sizes, gradients, independent references
(torchvision's DeepLabv3 ASPP, mmcv's PSAMask op, hand-worked CRP / DUC / HDC / attention
cases) and every backbone's parameter count against its paper / official release."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from insplug.core.backbones.drn import ARCHS as DRN_ARCHS
from insplug.core.backbones.drn import DRN
from insplug.core.backbones.enet import ENet
from insplug.core.backbones.espnet import ESPNetEncoder
from insplug.core.backbones.fc_densenet import FCDenseNet
from insplug.core.backbones.linknet import LinkNet
from insplug.core.layers.aspp import ASPP, output_stride_rates
from insplug.core.layers.crp import ChainedResidualPooling, LightWeightRefineNetDecoder
from insplug.core.layers.dense_aspp import DenseASPP
from insplug.core.layers.duc import DUC, hdc_dilations, max_gap_distance
from insplug.core.layers.fcn8s_head import FCN8sHead, bilinear_kernel
from insplug.core.layers.object_context import BaseOC, object_context
from insplug.core.layers.psa import PSA, psa_mask
from insplug.core.layers.upernet import UPerNetFusion


def count(module, buffers=False):
    n = sum(p.numel() for p in module.parameters())
    if buffers:  # Lasagne counts BN mean / inv_std among its parameters
        n += sum(b.numel() for k, b in module.state_dict().items() if 'running_' in k)
    return n


def pyramid(batch=2, sizes=((17, 23), (9, 12), (5, 6), (3, 3)), channels=(4, 8, 12, 16)):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, h, w, generator=gen) for c, (h, w) in zip(channels, sizes)]


# ------------------------------------------------------------------------ encoders / necks
def test_aspp_equals_torchvision_deeplabv3_aspp():
    from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP
    torch.manual_seed(0)
    ref = TorchvisionASPP(12, [6, 12, 18], 8).eval()
    for m in ref.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    ours = ASPP(12, 8, dilations=output_stride_rates(16)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 12, 13, 19)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert output_stride_rates(8) == (12, 24, 36)
    assert ours.project[-1].p == 0.1  # the official deeplab keep-prob 0.9


def test_psa_mask_equals_mmcv_psamask():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    gen = torch.Generator().manual_seed(0)
    for (h, w), mode in itertools.product([(1, 1), (3, 4), (5, 2)], ['collect', 'distribute']):
        x = torch.randn(2, (2 * h - 1) * (2 * w - 1), h, w, generator=gen)
        ref = mmcv_ops.PSAMask(mode, (2 * h - 1, 2 * w - 1))(x)
        assert torch.equal(psa_mask(x, mode), ref), (h, w, mode)


def test_psa_mask_hand_worked_and_gradcheck():
    # 1x2 map, 1x3 windows: position p=0 sees offsets (0, 0..2) -> q = offset - 1 + p
    mask = torch.arange(6.).reshape(1, 3, 1, 2)  # window cell k at position p: 10 * ... below
    out = psa_mask(mask, 'collect').reshape(2, 2)  # [q, p] = mask[win(q - p), p]
    # win(d) = d + 1; mask[k, p] = k * 2 + p
    expected = torch.tensor([[mask[0, 1, 0, 0], mask[0, 0, 0, 1]],
                             [mask[0, 2, 0, 0], mask[0, 1, 0, 1]]])
    assert torch.equal(out, expected)
    assert torch.equal(psa_mask(mask, 'distribute').reshape(2, 2), expected.t())
    x = torch.randn(1, 15, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: psa_mask(t, 'collect'), (x,))


def test_psa_shapes_and_release_window_crop():
    torch.manual_seed(0)
    psa = PSA(8, 6, shrink_factor=2, max_window=9).eval()
    x = torch.randn(2, 8, 9, 7)
    assert psa(x).shape == (2, 16, 9, 7)
    assert torch.equal(psa(x)[:, :8], x)  # the release returns cat(input, attended)
    with pytest.raises(ValueError, match='max_window'):
        PSA(8, 6, shrink_factor=1, max_window=9)(torch.randn(1, 8, 6, 6))


def test_dense_aspp_channels_order_and_gradients():
    torch.manual_seed(0)
    m = DenseASPP(6, 8, 4, dilations=(3, 6, 12), out_channels=5)
    x = torch.randn(2, 6, 11, 9, requires_grad=True)
    assert m(x).shape == (2, 5, 11, 9)
    m.project = None
    y = m.eval()(x)
    assert y.shape == (2, 6 + 3 * 4, 11, 9)
    assert torch.equal(y[:, -6:], x)  # the release concatenates new features first
    assert not hasattr(m.layers[0], 'norm1') and hasattr(m.layers[1], 'norm1')
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_duc_is_a_pixel_shuffle_of_the_conv():
    m = DUC(3, 2, upscale=3, norm_layer=None, act=False)
    x = torch.randn(1, 3, 5, 4)
    y = m(x)
    assert y.shape == (1, 2, 15, 12)
    z = m.conv(x)  # channel l * 9 + i * 3 + j -> output (l, 3 r + i, 3 c + j)
    assert torch.equal(y[0, 1, 3 * 2 + 1, 3 * 3 + 2], z[0, 1 * 9 + 1 * 3 + 2, 2, 3])
    assert torch.autograd.gradcheck(DUC(2, 1, 2, None, False).double(),
                                    (torch.randn(1, 2, 3, 3, dtype=torch.float64,
                                                 requires_grad=True),))


def test_hdc_condition_from_the_paper():
    assert max_gap_distance((1, 2, 5)) == 2  # the paper's valid example (<= K = 3)
    assert max_gap_distance((1, 2, 9)) > 3
    assert max_gap_distance((2, 4, 8)) > 3  # common factor 2: gridding
    assert hdc_dilations(6) == [1, 2, 5, 9, 1, 2]
    # brute force: the 1-D receptive field of 3x3 convs with rates (1, 2, 5) has no holes
    def covered(rates):
        pos = {0}
        for r in rates:
            pos = {p + d * r for p in pos for d in (-1, 0, 1)}
        return pos
    field = covered((1, 2, 5))
    assert field == set(range(min(field), max(field) + 1))
    assert covered((2, 4, 8)) != set(range(-14, 15))


def test_object_context_matches_a_per_pixel_loop_and_starts_at_zero():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 3, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    out = object_context(q, k, v)
    for p in range(5):
        w = torch.softmax(torch.stack([q[0, :, p] @ k[0, :, j] for j in range(5)]) / 3 ** 0.5, 0)
        assert torch.allclose(out[0, :, p], (v[0] * w).sum(1))
    m = BaseOC(8, 6, 4, 4).eval()
    x = torch.randn(2, 8, 5, 7)
    assert m(x).shape == (2, 6, 5, 7)
    fused = m.conv_bn_dropout(torch.cat([torch.zeros(2, 6, 5, 7), x], 1))
    assert torch.allclose(m(x), fused)  # W is zero-initialised as in the release
    assert BaseOC(8, sizes=(2,)).eval()(torch.randn(1, 8, 7, 5)).shape == (1, 8, 7, 5)


def test_upernet_fusion_shapes_gradients_and_top_level_path():
    feats = pyramid()
    m = UPerNetFusion((4, 8, 12, 16), 8, ppm_channels=6)
    assert m(feats).shape == (2, 8, 17, 23)
    levels = m.eval().pyramid(feats)
    assert [tuple(p.shape[-2:]) for p in levels] == [(17, 23), (9, 12), (5, 6), (3, 3)]
    assert len(m.fpn_out) == 3  # the PPM output is not smoothed again
    with_cls = UPerNetFusion((4, 8, 12, 16), 8, ppm_channels=6, num_classes=3)
    assert with_cls(feats).shape == (2, 3, 17, 23)
    x = [f.double().requires_grad_() for f in pyramid(1, ((3, 4), (2, 2)), (2, 3))]
    tiny = UPerNetFusion((2, 3), 2, pool_scales=(1, 2), ppm_channels=2).double().eval()
    assert torch.autograd.gradcheck(lambda a, b: tiny([a, b]), tuple(x))


def test_crp_hand_worked_with_identity_convs():
    crp = ChainedResidualPooling(1, 1, num_stages=2)
    for conv in crp.convs:
        nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 1.0
    pooled1 = F.max_pool2d(x, 5, 1, 2)
    pooled2 = F.max_pool2d(pooled1, 5, 1, 2)
    assert torch.equal(crp(x), x + pooled1 + pooled2)


def test_light_weight_refinenet_decoder_shapes_and_gradcheck():
    feats = pyramid()
    m = LightWeightRefineNetDecoder((4, 8, 12, 16), 8)
    assert m.crp[-1].convs[0].in_channels == 16  # the top stage is 2 F wide (release: 512)
    assert m(feats).shape == (2, 8, 17, 23)
    assert LightWeightRefineNetDecoder((4, 8, 12, 16), 8, num_classes=3)(feats).shape == \
        (2, 3, 17, 23)
    x = [f.double().requires_grad_() for f in pyramid(1, ((3, 4), (2, 2)), (2, 3))]
    tiny = LightWeightRefineNetDecoder((2, 3), 2, num_stages=2).double()
    assert torch.autograd.gradcheck(lambda a, b: tiny([a, b]), tuple(x))


def test_fcn8s_bilinear_upsampling_and_shapes():
    k = bilinear_kernel(2, 4)
    assert torch.allclose(k[0, 0], torch.tensor([0.25, 0.75, 0.75, 0.25])[:, None]
                          * torch.tensor([0.25, 0.75, 0.75, 0.25])[None, :])
    assert k[0, 1].abs().sum() == 0
    head = FCN8sHead((4, 8, 12), 3)
    feats = pyramid(sizes=((9, 12), (5, 6), (3, 3)), channels=(4, 8, 12))
    assert head(feats).abs().sum() == 0  # zero-initialised scores, as the release
    for conv in (head.score_pool3, head.score_pool4, head.score_fr):
        nn.init.normal_(conv.weight)
    out = head(feats, out_size=(70, 93))
    assert out.shape == (2, 3, 70, 93)
    # interior of a constant score map stays constant through the bilinear upsampling
    const = torch.ones(1, 3, 4, 4)
    up = head.upscore2(const)
    assert torch.allclose(up[..., 1:-1, 1:-1], torch.ones_like(up[..., 1:-1, 1:-1]))


# ------------------------------------------------------------------------------- backbones
@pytest.mark.parametrize('arch,million', [('drn_c_26', 21.1), ('drn_c_42', 31.2),
                                          ('drn_c_58', 41.6), ('drn_d_22', 16.4),
                                          ('drn_d_38', 26.5), ('drn_d_54', 35.8),
                                          ('drn_d_105', 54.8)])
def test_drn_parameter_counts_match_the_release_readme(arch, million):
    # fyu/drn README (ImageNet classifier included: 1x1 conv fc to 1000 classes)
    assert count(DRN(arch, num_classes=1000)) / 1e6 == pytest.approx(million, abs=0.05)


def test_drn_levels_strides_and_dilations():
    m = DRN('drn_c_26', out_indices=range(8)).eval()
    outs = m(torch.randn(1, 3, 33, 41))
    assert [tuple(o.shape[-2:]) for o in outs] == [(33, 41), (17, 21), (9, 11)] + [(5, 6)] * 5
    assert m.out_channels == [16, 32, 64, 128, 256, 512, 512, 512]
    # the release builds levels 5-8 with new_level=False: the full rate from the first conv
    assert m.layer5[0].conv1.dilation == (2, 2) and m.layer5[0].conv1.stride == (1, 1)
    assert m.layer6[0].conv1.dilation == (4, 4)
    assert not m.layer7[0].residual and m.layer7[0].conv1.dilation == (2, 2)
    d = DRN('drn_d_22')
    assert isinstance(d.layer7[0], nn.Conv2d) and d.layer7[0].dilation == (2, 2)
    with pytest.raises(ValueError, match='arch'):
        DRN('drn_c_54')


def test_enet_parameter_count_and_stage_shapes():
    # paper: 0.37 M (Cityscapes, 19 classes + the final transposed conv)
    assert count(ENet(num_classes=19)) / 1e6 == pytest.approx(0.37, abs=0.01)
    m = ENet(out_indices=range(6), num_classes=3).eval()
    outs = m(torch.randn(2, 3, 40, 56))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (16, 20, 28), (64, 10, 14), (128, 5, 7), (128, 5, 7), (64, 10, 14), (16, 20, 28),
        (3, 40, 56)]
    rates = [b.main[3].dilation[0] for b in m.stage2 if isinstance(b.main[3], nn.Conv2d)
             and b.main[3].kernel_size == (3, 3)]
    assert rates == [1, 2, 4, 1, 8, 16]
    with pytest.raises(ValueError, match='pad_size_divisor'):
        m(torch.randn(1, 3, 36, 40))


def esp_decoder_count(classes):
    """Light-weight decoder of the release's ``ESPNet`` (Model.py), counted by hand."""
    def esp(cin, cout):  # DilatedParllelResidualBlockB(cin, cout, add=False)
        n = cout // 5
        n1 = cout - 4 * n
        return cin * n + n * n1 * 9 + 4 * n * n * 9 + 3 * cout
    c = classes
    return (131 * c + 2 * c + (19 + c) * c * 9 + 3 * c + c * c * 4 + 6 * c + esp(2 * c, c)
            + c * c * 4 + 3 * c + c * c * 4)


def test_espnet_parameter_count_and_shapes():
    # paper: ESPNet (p = 2, q = 8) has 0.364 M parameters (Cityscapes, 20 classes in the code)
    total = count(ESPNetEncoder(2, 8, num_classes=20)) + esp_decoder_count(20)
    assert total / 1e6 == pytest.approx(0.364, abs=0.002)
    m = ESPNetEncoder(2, 3).eval()
    outs = m(torch.randn(1, 3, 37, 45))
    assert [tuple(o.shape[1:]) for o in outs] == [(19, 19, 23), (131, 10, 12), (256, 5, 6)]


@pytest.mark.parametrize('arch,million', [('fc_densenet56', 1.4), ('fc_densenet67', 3.5),
                                          ('fc_densenet103', 9.4)])
def test_fc_densenet_parameter_counts_match_the_paper(arch, million):
    # the paper's figures are Lasagne's parameter count, which includes BN mean / inv_std
    assert count(FCDenseNet(arch, num_classes=11), buffers=True) / 1e6 == \
        pytest.approx(million, abs=0.05)


def test_fc_densenet_levels_at_odd_sizes():
    m = FCDenseNet('fc_densenet56', out_indices=range(6), num_classes=3).eval()
    outs = m(torch.randn(2, 3, 37, 50))
    assert [tuple(o.shape[-2:]) for o in outs] == [(1, 1), (2, 3), (4, 6), (9, 12), (18, 25),
                                                   (37, 50), (37, 50)]
    # last up stack: TU output (12 * 4) + first skip (48 + 12 * 4) + its own 4 layers (12 * 4)
    assert m.out_channels == [336, 384, 336, 288, 240, 192]


def test_linknet_parameter_count_and_levels():
    assert count(LinkNet(num_classes=12)) / 1e6 == pytest.approx(11.5, abs=0.05)  # paper 11.5 M
    m = LinkNet(out_indices=range(6), widths=(16, 32, 64, 128)).eval()
    outs = m(torch.randn(2, 3, 45, 67))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (8, 23, 34), (16, 12, 17), (16, 12, 17), (32, 6, 9), (64, 3, 5), (128, 2, 3)]
    import torchvision
    sd = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
          if not k.startswith('fc.')}
    assert not LinkNet().load_state_dict(sd, strict=False).unexpected_keys


@pytest.mark.parametrize('build', [
    lambda: DRN('drn_d_22', channels=(4, 4, 8, 8, 8, 8, 8, 8)),
    lambda: ENet(out_indices=(2, 5)), lambda: ESPNetEncoder(1, 1),
    lambda: FCDenseNet(None, growth_rate=2, layers=(1, 1, 1), first_channels=4),
    lambda: LinkNet(out_indices=(0, 3), widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1))])
def test_backbone_gradients_reach_the_input(build):
    torch.manual_seed(0)
    m = build()
    x = torch.randn(2, 3, 24, 32, requires_grad=True)
    outs = m(x)
    assert len(outs) == len(m.out_indices)
    sum(o.square().mean() for o in outs).backward()
    assert x.grad.abs().sum() > 0
