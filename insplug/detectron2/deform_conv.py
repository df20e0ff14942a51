"""detectron2's deformable convolutions, runnable on CPU.

detectron2's ``DeformConv`` / ``ModulatedDeformConv`` (used by ``DeformBottleneckBlock`` when
``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` is set, e.g. YOLACT++'s DCNv2 ResNet) call compiled CUDA
kernels and raise on CPU tensors. torchvision's ``deform_conv2d`` computes the same operation
(the original DCN kernels' sampling, offsets laid out as (dy, dx) per kernel point, the DCNv2
modulation mask) on CPU and CUDA. :func:`enable_cpu_deform_convs` re-classes a model's
detectron2 deformable convs in place to the subclasses below: same parameters and state_dict
keys, detectron2's own kernel for CUDA tensors, torchvision's for CPU tensors.

Shapes: B images, C_in / C_out channels, k x k kernel, G deformable groups, (H, W) input and
(H', W') output size.
"""
import torch
from detectron2.layers.deform_conv import DeformConv, ModulatedDeformConv
from torchvision.ops import deform_conv2d

__all__ = ['CPUDeformConv', 'CPUModulatedDeformConv', 'enable_cpu_deform_convs']


def _finish(conv, x):
    if conv.norm is not None:
        x = conv.norm(x)
    if conv.activation is not None:
        x = conv.activation(x)
    return x


class CPUDeformConv(DeformConv):
    """``DeformConv`` (DCNv1) with a CPU path.

    forward(x (B, C_in, H, W), offset (B, 2 G k k, H', W')) -> (B, C_out, H', W').
    """

    def forward(self, x, offset):
        if x.is_cuda or x.numel() == 0:
            return super().forward(x, offset)
        if self.groups != 1:
            raise NotImplementedError('CPUDeformConv: grouped deformable conv (groups > 1) has '
                                      'no CPU path; torchvision supports groups = 1')
        out = deform_conv2d(x, offset, self.weight, None, self.stride, self.padding,
                            self.dilation)
        return _finish(self, out)


class CPUModulatedDeformConv(ModulatedDeformConv):
    """``ModulatedDeformConv`` (DCNv2) with a CPU path.

    forward(x (B, C_in, H, W), offset (B, 2 G k k, H', W'), mask (B, G k k, H', W') in [0, 1])
    -> (B, C_out, H', W').
    """

    def forward(self, x, offset, mask):
        if x.is_cuda or x.numel() == 0:
            return super().forward(x, offset, mask)
        if self.groups != 1:
            raise NotImplementedError('CPUModulatedDeformConv: grouped deformable conv '
                                      '(groups > 1) has no CPU path')
        out = deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                            self.dilation, mask=mask)
        return _finish(self, out)


def enable_cpu_deform_convs(module: torch.nn.Module) -> int:
    """Give every detectron2 ``DeformConv`` / ``ModulatedDeformConv`` in ``module`` a CPU path
    (in place; parameters untouched). Returns how many were converted."""
    count = 0
    for m in module.modules():
        if type(m) is DeformConv:
            m.__class__ = CPUDeformConv
            count += 1
        elif type(m) is ModulatedDeformConv:
            m.__class__ = CPUModulatedDeformConv
            count += 1
    return count
