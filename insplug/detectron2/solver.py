"""Optimizer for yacs training: detectron2's SGD, or AdamW (SparseInst) by
``MODEL.INSPLUG.SOLVER.OPTIMIZER``.

AdamW uses detectron2's parameter groups (``SOLVER.WEIGHT_DECAY_NORM`` etc.) and gradient
clipping (``SOLVER.CLIP_GRADIENTS``), so the official SparseInst recipe (AdamW, lr 5e-5,
weight decay 0.05, none on norm layers) is ``OPTIMIZER: ADAMW`` plus stock SOLVER keys.

Gradient clipping: detectron2's ``CLIP_TYPE`` ``"value"`` and ``"norm"`` act on each parameter
separately. The releases of mmdet-based methods (RefineMask, PolarMask, ...) and insplug's mmdet
configs (``optim_wrapper.clip_grad``) clip the norm of ALL gradients together
(``torch.nn.utils.clip_grad_norm_`` over the model); that is ``CLIP_TYPE: "full_model"`` here
(the name detectron2's DETR project gives it), with ``CLIP_VALUE`` the max norm and
``NORM_TYPE`` its p.
"""
import torch
from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

OPTIMIZERS = ('SGD', 'ADAMW')
FULL_MODEL = 'full_model'


def with_global_norm_clipping(optimizer, max_norm, norm_type=2.0):
    """``optimizer`` re-classed so that each ``step`` first clips the global gradient norm of
    all its parameters to ``max_norm`` (as mmdet's ``clip_grad`` / ``clip_grad_norm_``)."""
    base = type(optimizer)

    class GlobalNormGradientClip(base):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group['params']
                      if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
            return super().step(closure)

    GlobalNormGradientClip.__name__ = f'{base.__name__}WithGlobalGradientClip'
    GlobalNormGradientClip.__qualname__ = GlobalNormGradientClip.__name__
    optimizer.__class__ = GlobalNormGradientClip
    return optimizer


def _clip(cfg, optimizer):
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == FULL_MODEL:
        return with_global_norm_clipping(optimizer, clip.CLIP_VALUE, clip.NORM_TYPE)
    return maybe_add_gradient_clipping(cfg, optimizer)


def build_optimizer(cfg, model):
    """``torch.optim.Optimizer`` for ``model`` as ``cfg`` asks (see module docstring)."""
    name = cfg.MODEL.INSPLUG.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(f'MODEL.INSPLUG.SOLVER.OPTIMIZER = {name!r}; choose one of {OPTIMIZERS}')
    if name == 'SGD':
        if cfg.SOLVER.CLIP_GRADIENTS.ENABLED and \
                cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == FULL_MODEL:
            unclipped = cfg.clone()
            unclipped.defrost()
            unclipped.SOLVER.CLIP_GRADIENTS.ENABLED = False
            return _clip(cfg, build_d2_optimizer(unclipped, model))
        return build_d2_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
    optimizer = torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR,
                                  weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                  amsgrad=cfg.MODEL.INSPLUG.SOLVER.AMSGRAD)
    return _clip(cfg, optimizer)


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
    return with_global_norm_clipping(base, float(clip_max_norm), float(clip_norm_type))
