"""Optimizer for yacs training: detectron2's SGD, or AdamW (SparseInst) by
``MODEL.INSPLUG.SOLVER.OPTIMIZER``.

AdamW uses detectron2's parameter groups (``SOLVER.WEIGHT_DECAY_NORM`` etc.) and gradient
clipping (``SOLVER.CLIP_GRADIENTS``), so the official SparseInst recipe (AdamW, lr 5e-5,
weight decay 0.05, none on norm layers) is ``OPTIMIZER: ADAMW`` plus stock SOLVER keys.
"""
import torch
from detectron2.config import CfgNode as CN
from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

OPTIMIZERS = ('SGD', 'ADAMW')


def build_optimizer(cfg, model):
    """``torch.optim.Optimizer`` for ``model`` as ``cfg`` asks (see module docstring)."""
    name = cfg.MODEL.INSPLUG.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(f'MODEL.INSPLUG.SOLVER.OPTIMIZER = {name!r}; choose one of {OPTIMIZERS}')
    if name == 'SGD':
        return build_d2_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
    optimizer = torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR,
                                  weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                  amsgrad=cfg.MODEL.INSPLUG.SOLVER.AMSGRAD)
    return maybe_add_gradient_clipping(cfg, optimizer)


def clipped_optimizer(params, optimizer='SGD', clip_max_norm=35.0, clip_norm_type=2.0,
                      **kwargs):
    """An SGD / AdamW optimizer that clips the global gradient norm before each step.

    For LazyConfigs run by detectron2's stock ``tools/lazyconfig_train_net.py`` (which sets
    ``optimizer.params.model`` and instantiates ``optimizer``), e.g. RefineMask's clipping at 35::

        optimizer = L(clipped_optimizer)(
            params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
            optimizer='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4, clip_max_norm=35.0)

    Args:
        params: parameter groups.
        optimizer: 'SGD' or 'AdamW'.
        clip_max_norm, clip_norm_type: ``torch.nn.utils.clip_grad_norm_`` arguments.
        **kwargs: the optimizer's own arguments (lr, momentum, weight_decay, ...).
    """
    classes = {'SGD': torch.optim.SGD, 'ADAMW': torch.optim.AdamW}
    if optimizer.upper() not in classes:
        raise ValueError(f'clipped_optimizer: optimizer={optimizer!r}; choose SGD or AdamW')
    base = classes[optimizer.upper()](params, **kwargs)
    clip = CN({'SOLVER': {'CLIP_GRADIENTS': {'ENABLED': True, 'CLIP_TYPE': 'norm',
                                              'CLIP_VALUE': float(clip_max_norm),
                                              'NORM_TYPE': float(clip_norm_type)}}})
    return maybe_add_gradient_clipping(clip, base)
