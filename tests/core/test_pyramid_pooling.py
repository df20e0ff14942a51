"""Pyramid pooling module: odd sizes, an element-wise reference, norm variant, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from insplug.core.layers.pyramid_pooling import PyramidPooling


def manual_adaptive_pool(x, s):
    """Average over PyTorch's adaptive bins [floor(i*H/s), ceil((i+1)*H/s))."""
    b, c, h, w = x.shape
    out = torch.zeros(b, c, s, s, dtype=x.dtype)
    for i in range(s):
        y0, y1 = math.floor(i * h / s), math.ceil((i + 1) * h / s)
        for j in range(s):
            x0, x1 = math.floor(j * w / s), math.ceil((j + 1) * w / s)
            out[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean((2, 3))
    return out


def conv1x1(x, conv):
    weight = conv.weight[:, :, 0, 0]
    return torch.einsum('oc,bchw->bohw', weight, x) + conv.bias[None, :, None, None]


@pytest.mark.parametrize('size', [(7, 5), (13, 11), (3, 3), (1, 1), (9, 20)])
def test_reference_and_shapes_at_odd_sizes(size):
    torch.manual_seed(0)
    ppm = PyramidPooling(8, channels=3, out_channels=6).double()
    x = torch.randn(2, 8, *size, dtype=torch.float64, requires_grad=True)
    out = ppm(x)
    assert out.shape == (2, 6, *size)
    branches = []
    for stage, s in zip(ppm.stages, (1, 2, 3, 6)):
        pooled = F.relu(conv1x1(manual_adaptive_pool(x, s), stage[1]))
        branches.append(F.interpolate(pooled, size=size, mode='bilinear', align_corners=False))
    ref = F.relu(conv1x1(torch.cat(branches + [x], 1), ppm.bottleneck[0]))
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_global_branch_is_constant_mean():
    ppm = PyramidPooling(4, channels=4, pool_sizes=(1,))
    conv = ppm.stages[0][1]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(4)[:, :, None, None])
        conv.bias.zero_()
    x = torch.rand(1, 4, 5, 7)  # non-negative: ReLU keeps the mean
    branch = F.interpolate(ppm.stages[0](x), size=(5, 7), mode='bilinear', align_corners=False)
    torch.testing.assert_close(branch, x.mean((2, 3), keepdim=True).expand_as(x))


def test_pspnet_form_with_norm_and_3x3_bottleneck():
    ppm = PyramidPooling(16, norm_layer=nn.BatchNorm2d, bottleneck_kernel=3)
    assert ppm.bottleneck[0].kernel_size == (3, 3) and ppm.bottleneck[0].bias is None
    assert ppm(torch.randn(2, 16, 9, 7)).shape == (2, 16, 9, 7)


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match='in_channels'):
        PyramidPooling(8)(torch.randn(1, 6, 5, 5))
    with pytest.raises(ValueError, match='pool_sizes'):
        PyramidPooling(8, pool_sizes=(1, 0))
