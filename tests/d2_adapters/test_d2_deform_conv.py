"""detectron2's deformable convs on CPU (``insplug.detectron2.deform_conv``): the re-classed
``DeformConv`` / ``ModulatedDeformConv`` agree with mmcv's CPU ops (what the mmdet YOLACT++
config runs) on outputs and gradients, with deformable groups, stride and bias; and the
YOLACT++ yaml model (DCNv2 in res3-res5) runs inference on CPU.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.layers.deform_conv import DeformConv, ModulatedDeformConv  # noqa: E402

from insplug.detectron2.deform_conv import (CPUDeformConv, CPUModulatedDeformConv,  # noqa: E402
                                            enable_cpu_deform_convs)


def test_modulated_matches_mmcv_outputs_and_gradients():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    torch.manual_seed(0)
    conv = ModulatedDeformConv(8, 6, 3, stride=2, padding=1, bias=True, deformable_groups=2)
    assert enable_cpu_deform_convs(torch.nn.ModuleList([conv])) == 1
    assert isinstance(conv, CPUModulatedDeformConv)
    x = torch.randn(2, 8, 11, 13, requires_grad=True)
    offset = (torch.randn(2, 2 * 2 * 9, 6, 7) * 2).requires_grad_()
    mask = torch.rand(2, 2 * 9, 6, 7, requires_grad=True)
    ours = conv(x, offset, mask)
    ref = mmcv_ops.modulated_deform_conv2d(x, offset, mask, conv.weight, conv.bias, 2, 1, 1, 1,
                                           2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (x, offset, mask, conv.weight), g)
    ref_grads = torch.autograd.grad(ref, (x, offset, mask, conv.weight), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_deform_matches_mmcv():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    torch.manual_seed(1)
    conv = DeformConv(8, 6, 3, stride=1, padding=2, dilation=2, deformable_groups=1, bias=False)
    enable_cpu_deform_convs(conv)
    assert isinstance(conv, CPUDeformConv)
    x = torch.randn(2, 8, 11, 13)
    offset = torch.randn(2, 18, 11, 13) * 2
    ref = mmcv_ops.deform_conv2d(x, offset, conv.weight, 1, 2, 2, 1, 1)
    torch.testing.assert_close(conv(x, offset), ref, rtol=0, atol=1e-5)


def test_yolact_plus_yaml_runs_on_cpu():
    from detectron2.modeling import build_model

    from insplug.detectron2.train_net import setup_cfg
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'yolact_plus_r50_coco.yaml'),
                    ['MODEL.DEVICE', 'cpu', 'MODEL.INSPLUG.YOLACT.NUM_CLASSES', 3])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    dcn = [m for m in model.modules() if isinstance(m, CPUModulatedDeformConv)]
    assert len(dcn) == 4 + 6 + 3  # every block of res3-res5
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        out = model([{'image': image, 'height': 96, 'width': 128}])[0]['instances']
    assert out.image_size == (96, 128)
    assert torch.isfinite(out.scores).all()
