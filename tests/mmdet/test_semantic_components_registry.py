"""mmdet registration of the semantic components: every name builds in the insplug scope, none
is an mmdet name, the necks keep the tuple interface, and the adapters compute the core maths."""
import pytest
import torch
from mmengine.registry import DefaultScope

import insplug.mmdet  # noqa: F401
from insplug.core.layers.aspp import ASPP
from insplug.core.losses.lovasz import lovasz_softmax
from insplug.registry import MODELS

NAMES = ['DRN', 'ENet', 'ESPNet', 'FCDenseNet', 'LinkNet', 'ASPP', 'DenseASPP', 'DUC',
         'ObjectContextBlock', 'PointwiseSpatialAttention', 'ChainedResidualPooling',
         'ContextNeck', 'UPerNetNeck', 'LWRefineNetNeck', 'FCN8sNeck', 'UPerNetSemanticBranch',
         'LovaszSoftmaxLoss']


@pytest.fixture(autouse=True)
def insplug_scope():
    with DefaultScope.overwrite_default_scope('insplug'):
        yield


def test_names_are_insplugs_and_not_mmdets():
    import mmdet.registry
    for name in NAMES:
        assert MODELS.get(name) is not None, name
        assert mmdet.registry.MODELS.get(name) is None, name


def feats():
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, c, s, s + 1, generator=gen)
                 for c, s in [(4, 17), (8, 9), (16, 5)])


def test_context_neck_transforms_only_the_chosen_level():
    neck = MODELS.build(dict(type='ContextNeck', in_channels=[4, 8, 16], levels=(-1,),
                             context=dict(type='ASPP', channels=6, dilations=(1, 2, 3)))).eval()
    x = feats()
    out = neck(x)
    assert isinstance(out, tuple) and len(out) == 3
    assert out[0] is x[0] and out[1] is x[1]
    assert isinstance(neck.contexts[0], ASPP) and out[2].shape == (2, 6, 5, 6)
    assert torch.equal(out[2], neck.contexts[0](x[2]))


@pytest.mark.parametrize('cfg,shape', [
    (dict(type='UPerNetNeck', in_channels=[4, 8, 16], channels=8, ppm_channels=8),
     (2, 8, 17, 18)),
    (dict(type='LWRefineNetNeck', in_channels=[8, 16], channels=8, start_level=1),
     (2, 8, 9, 10)),
    (dict(type='FCN8sNeck', in_channels=[4, 8, 16], out_channels=3), (2, 3, 17, 18)),
])
def test_fusion_necks_return_one_map(cfg, shape):
    out = MODELS.build(cfg)(feats())
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == shape


def test_backbones_build_and_context_modules_take_norm_cfg():
    model = MODELS.build(dict(type='LinkNet', out_indices=(0, 5), widths=(8, 8, 8, 8)))
    assert [o.shape[1] for o in model(torch.randn(2, 3, 32, 32))] == [4, 8]
    gn = MODELS.build(dict(type='ASPP', in_channels=8, channels=8,
                           norm_cfg=dict(type='GN', num_groups=4)))
    assert isinstance(gn.convs[0][1], torch.nn.GroupNorm)
    plain = MODELS.build(dict(type='DUC', in_channels=8, out_channels=2, norm_cfg=None))
    assert plain.conv.bias is not None and plain(torch.randn(1, 8, 3, 3)).shape == (1, 2, 6, 6)


def test_lovasz_softmax_loss_wraps_the_core_function():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    labels = torch.randint(0, 3, (2, 4, 5), generator=gen)
    labels[0, 0] = 255
    loss = MODELS.build(dict(type='LovaszSoftmaxLoss', classes='all', ignore_index=255,
                             loss_weight=2.0))
    expected = 2.0 * lovasz_softmax(torch.softmax(logits, 1), labels, 'all', ignore=255)
    assert torch.equal(loss(logits, labels), expected)


def test_sparseinst_encoder_context_replaces_the_pyramid_pooling():
    enc = MODELS.build(dict(type='InstanceContextEncoder', in_channels=[4, 8, 16], out_channels=8,
                            context=dict(type='ASPP', in_channels=8, channels=8,
                                         dilations=(1, 2, 3)))).eval()
    assert isinstance(enc.ppm, ASPP)
    assert enc(feats()).shape == (2, 8, 17, 18)
    default = MODELS.build(dict(type='InstanceContextEncoder', in_channels=[4, 8, 16],
                                out_channels=8))
    assert type(default.ppm).__name__ == 'PyramidPooling'


def test_refinemask_semantic_branch_reads_all_levels():
    from insplug.core.layers.upernet import UPerNetSemanticBranch
    head = MODELS.build(dict(type='RefineMaskHead', num_classes=2, conv_in_channels_instance=8,
                             conv_out_channels_instance=64, conv_in_channels_semantic=8,
                             conv_out_channels_semantic=8, num_convs_semantic=1,
                             semantic_branch=dict(type='UPerNetSemanticBranch',
                                                  in_channels=[8, 8, 8], channels=8,
                                                  ppm_channels=4)))
    assert isinstance(head.semantic, UPerNetSemanticBranch) and head.semantic_multi_level
    levels = tuple(torch.randn(1, 8, s, s) for s in (16, 8, 4))
    features, logits = head.forward_semantic(levels)
    assert features.shape == (1, 8, 16, 16) and logits.shape == (1, 16, 16)
    plain = MODELS.build(dict(type='RefineMaskHead', num_classes=2))
    assert not plain.semantic_multi_level


def test_discriminative_semantic_loss_fn_gets_the_semantic_targets():
    from insplug.core.bottomup.discriminative import discriminative_head_losses
    gen = torch.Generator().manual_seed(2)
    emb = torch.randn(2, 4, 6, 7, generator=gen)
    sem = torch.randn(2, 3, 6, 7, generator=gen)
    masks = torch.zeros(3, 6, 7, dtype=torch.bool)
    masks[0, :3, :3] = masks[1, 3:, 4:] = masks[2, 1:4, 2:6] = True
    labels, img = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])
    seen = {}

    def fn(logits, targets):
        seen['targets'] = targets
        return logits.sum() * 0 + 1.5

    losses = discriminative_head_losses(emb, sem, None, masks, labels, img,
                                        semantic_weight=2.0, semantic_loss_fn=fn)
    assert losses['loss_semantic'].item() == 3.0
    expected = torch.zeros(2, 6, 7, dtype=torch.long)
    expected[0][masks[0]] = 1
    expected[0][masks[1]] = 2
    expected[1][masks[2]] = 2
    assert torch.equal(seen['targets'], expected)
