"""Peak back-propagation: peak response maps (PRM, Zhou et al. CVPR 2018).

Shapes: P peaks, an input image 3 x H x W, class response maps K x h x w.

In inference every ``nn.Conv2d`` of the network is switched to the release's ``pr_conv2d``:
the forward values are unchanged, the backward is a probabilistic "winner-take-all" pass: the
gradient reaching a conv output is divided by the response of the conv with only its positive
weights to the min-shifted input, and the gradient leaving it is multiplied by that min-shifted
input. A unit gradient placed at a peak of its class map then yields, summed over the input
channels and clamped at 0, the peak response map, normalised to sum 1.

The release runs one backward pass per peak. Here the image is replicated once per peak (the
network in eval mode treats each copy independently, and the shift ``input.min()`` of every
conv is the same for identical copies) and one backward pass seeds each copy at its own peak,
``chunk`` copies at a time: the same maps as the release's loop, in batches.
"""
from contextlib import contextmanager
from types import MethodType

import torch
import torch.nn as nn
import torch.nn.functional as F


class _PreHook(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offset):
        ctx.save_for_backward(x, offset)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        x, offset = ctx.saved_tensors
        return (x - offset) * grad, None


class _PostHook(torch.autograd.Function):
    @staticmethod
    def forward(ctx, resp, norm):
        ctx.save_for_backward(norm)
        return resp.clone()

    @staticmethod
    def backward(ctx, grad):
        norm, = ctx.saved_tensors
        eps = 1e-10
        grad_norm = grad / (norm.abs() + eps)
        grad_norm[norm < eps] = 0
        return None, grad_norm


def peak_backprop_conv2d(conv, x):
    """Forward of ``conv`` on ``x`` with the release's peak back-propagation backward.

    A conv that carries its own ``norm`` / ``activation`` (detectron2's ``Conv2d``) applies
    them after the hooked conv, with the ordinary backward, as the separate norm / activation
    modules of other trunks.

    Args:
        conv: an ``nn.Conv2d``; x: (B, C, H, W).

    Returns:
        (B, C', H', W'), equal to ``conv(x)``.
    """
    offset = x.min().detach()
    x = _PreHook.apply(x, offset)
    resp = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                    conv.groups).detach()
    norm = F.conv2d(x - offset, F.relu(conv.weight).detach(), None, conv.stride, conv.padding,
                    conv.dilation, conv.groups)
    out = _PostHook.apply(resp, norm)
    if getattr(conv, 'norm', None) is not None:
        out = conv.norm(out)
    if getattr(conv, 'activation', None) is not None:
        out = conv.activation(out)
    return out


@contextmanager
def peak_backprop_mode(module):
    """Within the block every ``nn.Conv2d`` under ``module`` runs ``peak_backprop_conv2d``."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for m in convs:
        m.forward = MethodType(peak_backprop_conv2d, m)
    try:
        yield module
    finally:
        for m in convs:
            del m.forward  # back to the class's forward


def peak_response_maps(crm_fn, image, peak_list, chunk=16):
    """Peak response maps of the peaks of one image.

    Args:
        crm_fn: callable (B, 3, H, W) -> (B, K, h, w) class response maps; its convs should run
            in ``peak_backprop_mode`` and the network in eval mode.
        image: (1, 3, H, W) or (3, H, W).
        peak_list: (P, 4) rows (b, k, y, x) (b ignored: all peaks belong to ``image``).
        chunk: copies per backward pass.

    Returns:
        (P, H, W) float, each map clamped at 0 and divided by its sum.
    """
    if image.dim() == 3:
        image = image[None]
    out = []
    with torch.enable_grad():
        for start in range(0, peak_list.shape[0], chunk):
            peaks = peak_list[start:start + chunk]
            n = peaks.shape[0]
            x = image.detach().expand(n, -1, -1, -1).clone().requires_grad_(True)
            crm = crm_fn(x)
            seed = torch.zeros_like(crm)
            seed[torch.arange(n, device=crm.device), peaks[:, 1], peaks[:, 2], peaks[:, 3]] = 1
            grad, = torch.autograd.grad(crm, x, seed)
            prm = grad.sum(1).clamp(min=0)
            out.append(prm / prm.flatten(1).sum(1)[:, None, None])
    if not out:
        return image.new_zeros((0,) + image.shape[2:])
    return torch.cat(out)
