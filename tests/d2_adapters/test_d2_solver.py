"""Gradient clipping of insplug's detectron2 optimizers: ``CLIP_TYPE: "full_model"`` (yacs) and
``clipped_optimizer`` (LazyConfig) clip the norm of ALL gradients together, as mmdet's
``clip_grad`` and the mmdet-based releases do. The reference is computed by hand:
``torch.nn.utils.clip_grad_norm_`` over every parameter, then the plain optimizer's step, for two
steps (a large gradient that is clipped, then a small one; two steps because Adam's first step
does not depend on the gradient's scale). detectron2's per-parameter ``"norm"`` type is kept
and gives another result on the same gradients.
"""
import pytest

from d2_utils import INSTALL_HINT  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.solver.build import get_default_optimizer_params  # noqa: E402

from insplug.detectron2 import add_insplug_config, build_optimizer  # noqa: E402
from insplug.detectron2.solver import clipped_optimizer  # noqa: E402

MAX_NORM = 0.5


def fresh_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def gradient_sets(model):
    """Two sets of gradients: one far above MAX_NORM, one below it."""
    g = torch.Generator().manual_seed(1)
    big = [torch.randn(p.shape, generator=g) * 3 for p in model.parameters()]
    small = [torch.randn(p.shape, generator=g) * 0.01 for p in model.parameters()]
    assert torch.cat([b.flatten() for b in big]).norm() > 4 * MAX_NORM
    return [big, small]


def run_steps(model, optimizer, clip_by_hand=False):
    for grads in gradient_sets(model):
        for p, grad in zip(model.parameters(), grads):
            p.grad = grad.clone()
        if clip_by_hand:
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), MAX_NORM)
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def cfg_with(optimizer, clip_type):
    cfg = add_insplug_config(get_cfg())
    cfg.MODEL.INSPLUG.SOLVER.OPTIMIZER = optimizer
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MOMENTUM = 0.1, 0.0
    cfg.SOLVER.WEIGHT_DECAY = cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = MAX_NORM
    return cfg


@pytest.mark.parametrize('name, plain', [
    ('SGD', lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.0)),
    ('ADAMW', lambda m: torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.0))])
def test_full_model_clipping_is_the_global_norm(name, plain):
    ref = fresh_model()
    expected = run_steps(ref, plain(ref), clip_by_hand=True)

    model = fresh_model()
    optimizer = build_optimizer(cfg_with(name, 'full_model'), model)
    assert 'GlobalGradientClip' in type(optimizer).__name__
    for p, e in zip(run_steps(model, optimizer), expected):
        torch.testing.assert_close(p, e, rtol=0, atol=1e-6)

    per_param = fresh_model()
    result = run_steps(per_param, build_optimizer(cfg_with(name, 'norm'), per_param))
    assert any((p - e).abs().max() > 1e-3 for p, e in zip(result, expected))


def test_lazyconfig_clipped_optimizer_is_the_global_norm():
    ref = fresh_model()
    expected = run_steps(ref, torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9),
                         clip_by_hand=True)
    model = fresh_model()
    optimizer = clipped_optimizer(get_default_optimizer_params(model), optimizer='SGD',
                                  lr=0.1, momentum=0.9, clip_max_norm=MAX_NORM)
    for p, e in zip(run_steps(model, optimizer), expected):
        torch.testing.assert_close(p, e, rtol=0, atol=1e-6)
