"""Semantic-segmentation components in detectron2: the backbones build from ``MODEL.INSPLUG.SEMSEG``
with their levels' shapes, strides and channels reported; the context / fusion wrappers change
only what they should and compute the core modules' maths; errors name the fix."""
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import build_backbone  # noqa: E402

from insplug.detectron2.semantic_components import (ContextBackbone,  # noqa: E402
                                                     FusionBackbone)
from insplug.detectron2.train_net import setup_cfg  # noqa: E402

BASE = osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml')  # a ResNet-18 res3-res5 backbone


@pytest.mark.parametrize('name,opts,expected', [
    ('build_insplug_drn_backbone', ['MODEL.INSPLUG.SEMSEG.DRN.ARCH', 'drn_d_22'],
     {'l1': (32, 2), 'l2': (64, 4), 'l3': (128, 8), 'l7': (512, 8)}),
    ('build_insplug_enet_backbone', ['MODEL.INSPLUG.SEMSEG.OUT_INDICES', [1, 3, 5]],
     {'l1': (64, 4), 'l3': (128, 8), 'l5': (16, 2)}),
    ('build_insplug_espnet_backbone', [], {'l0': (19, 2), 'l1': (131, 4), 'l2': (256, 8)}),
    ('build_insplug_fc_densenet_backbone', ['MODEL.INSPLUG.SEMSEG.FC_DENSENET.ARCH',
                                            'fc_densenet56',
                                            'MODEL.INSPLUG.SEMSEG.OUT_INDICES', [3, 5]],
     {'l3': (288, 4), 'l5': (192, 1)}),
    ('build_insplug_linknet_backbone', ['MODEL.INSPLUG.SEMSEG.LINKNET.WIDTHS', [8, 16, 32, 64],
                                        'MODEL.INSPLUG.SEMSEG.OUT_INDICES', [0, 3, 5]],
     {'l0': (4, 2), 'l3': (16, 8), 'l5': (64, 32)}),
])
def test_backbones_report_their_levels(name, opts, expected):
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', name] + opts)
    backbone = build_backbone(cfg).eval()
    shapes = backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == expected
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    for k, (c, stride) in expected.items():
        assert out[k].shape[1] == c
        assert out[k].shape[-1] == -(-96 // stride)


def test_context_backbone_applies_the_core_module_to_chosen_outputs():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_insplug_context_backbone',
                           'MODEL.INSPLUG.SEMSEG.CONTEXT.NAME', 'ASPP',
                           'MODEL.INSPLUG.SEMSEG.CONTEXT.CHANNELS', 64,
                           'MODEL.INSPLUG.SEMSEG.CONTEXT.IN_FEATURES', ['res5']])
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, ContextBackbone)
    assert backbone.output_shape()['res5'].channels == 64
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        inner = backbone.bottom_up(x)
        outer = backbone(x)
    assert torch.equal(outer['res4'], inner['res4'])
    assert torch.equal(outer['res5'], backbone.contexts['res5'](inner['res5']))
    assert outer['res5'].shape == (1, 64, 3, 2)


def test_fusion_backbone_adds_the_fused_map():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_insplug_fusion_backbone',
                           'MODEL.INSPLUG.SEMSEG.FUSION.NAME', 'UPerNet',
                           'MODEL.INSPLUG.SEMSEG.FUSION.CHANNELS', 32,
                           'MODEL.INSPLUG.SEMSEG.FUSION.IN_FEATURES', ['res3', 'res4', 'res5']])
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, FusionBackbone)
    assert (backbone.output_shape()['fused'].channels,
            backbone.output_shape()['fused'].stride) == (32, 8)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        inner = backbone.bottom_up(x)
        out = backbone(x)
    assert torch.equal(out['fused'], backbone.fusion([inner['res3'], inner['res4'],
                                                      inner['res5']]))


def test_errors_name_the_keys():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_insplug_fusion_backbone',
                           'MODEL.INSPLUG.SEMSEG.FUSION.IN_FEATURES', ['res2', 'res5']])
    with pytest.raises(ValueError, match='FUSION.IN_FEATURES'):
        build_backbone(cfg)
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_insplug_context_backbone',
                           'MODEL.INSPLUG.SEMSEG.CONTEXT.NAME', 'Nope'])
    with pytest.raises(ValueError, match='CONTEXT.NAME'):
        build_backbone(cfg)
