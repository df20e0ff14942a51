"""Pyramid pooling as a detectron2 backbone wrapper / neck.

* ``build_ppm_backbone`` wraps a registered backbone: only the chosen outputs change, the
  others are the wrapped backbone's own tensors; shapes, strides and channels are reported;
* with the same weights it computes what mmdet's ``PyramidPoolingNeck`` computes (both wire
  :class:`insplug.core.layers.pyramid_pooling.PyramidPooling`);
* ``build_resnet_ppm_fpn_backbone`` (ResNet -> PPM on res5 -> FPN) trains end to end;
* bad ``in_features`` name the available outputs.
"""
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import build_backbone  # noqa: E402

from insplug.detectron2 import PyramidPoolingBackbone  # noqa: E402
from insplug.detectron2.train_net import setup_cfg  # noqa: E402

BASE = osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml')  # a ResNet-18 res3-res5 backbone


def test_wrapper_changes_only_the_chosen_outputs():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_ppm_backbone',
                           'MODEL.INSPLUG.PPM.BACKBONE_NAME', 'build_resnet_backbone',
                           'MODEL.INSPLUG.PPM.IN_FEATURES', ['res5']])
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, PyramidPoolingBackbone)
    shapes = backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == \
        {'res3': (128, 8), 'res4': (256, 16), 'res5': (512, 32)}
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        inner = backbone.bottom_up(x)
        outer = backbone(x)
        assert torch.equal(outer['res3'], inner['res3'])
        assert torch.equal(outer['res4'], inner['res4'])
        assert outer['res5'].shape == inner['res5'].shape == (1, 512, 3, 2)
        assert not torch.allclose(outer['res5'], inner['res5'])
        assert torch.equal(outer['res5'], backbone.ppms['res5'](inner['res5']))


def test_same_maths_as_the_mmdet_neck():
    pytest.importorskip('mmdet')
    from insplug.mmdet.layers.pyramid_pooling import PyramidPoolingNeck
    torch.manual_seed(0)

    class Two(torch.nn.Module):  # a stand-in detectron2 backbone with two outputs
        def forward(self, x):
            return {'a': x, 'b': x[:, :, ::2, ::2]}

        def output_shape(self):
            return {'a': ShapeSpec(channels=16, stride=8), 'b': ShapeSpec(channels=16, stride=16)}

    d2 = PyramidPoolingBackbone(Two(), in_features=['b'], out_channels=24, norm='BN',
                                bottleneck_kernel=3).eval()
    mm = PyramidPoolingNeck(in_channels=16, levels=(1,), out_channels=24,
                            norm_cfg=dict(type='BN'), bottleneck_kernel=3).eval()
    mm.ppms[0].load_state_dict(d2.ppms['b'].state_dict())
    assert d2.output_shape()['b'].channels == 24
    x = torch.randn(2, 16, 22, 18)
    with torch.no_grad():
        a = d2(x)
        b = mm((x, x[:, :, ::2, ::2]))
    torch.testing.assert_close(a['b'], b[1])
    assert torch.equal(a['a'], b[0])


def test_resnet_ppm_fpn_backbone_trains():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_resnet_ppm_fpn_backbone',
                           'MODEL.RESNETS.OUT_FEATURES', ['res2', 'res3', 'res4', 'res5'],
                           'MODEL.FPN.IN_FEATURES', ['res2', 'res3', 'res4', 'res5'],
                           'MODEL.FPN.OUT_CHANNELS', 32])
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert backbone.size_divisibility == 32
    out = backbone(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        'p2': (32, 16, 16), 'p3': (32, 8, 8), 'p4': (32, 4, 4), 'p5': (32, 2, 2),
        'p6': (32, 1, 1)}
    sum(v.mean() for v in out.values()).backward()
    ppm = backbone.bottom_up.ppms['res5']
    assert ppm.bottleneck[0].weight.grad.abs().sum() > 0


def test_bad_in_features():
    cfg = setup_cfg(BASE, ['MODEL.BACKBONE.NAME', 'build_ppm_backbone',
                           'MODEL.INSPLUG.PPM.IN_FEATURES', ['p5']])
    with pytest.raises(ValueError, match=r"\['res3', 'res4', 'res5'\]"):
        build_backbone(cfg)
