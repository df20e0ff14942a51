"""GradientWatch: the trainable tensors that never had a non-zero gradient, hooks released once
a tensor is reached, frozen tensors unwatched, the record kept over a resume."""
import torch
from torch import nn

from insplug.cli.gradient_watch import GradientWatch


class TwoBranches(nn.Module):
    """``live`` always learns; ``dead`` is behind a ReLU whose input is negative everywhere
    (the SharpMask km = 16 failure: a one-channel module that passes nothing)."""

    def __init__(self):
        super().__init__()
        self.live = nn.Linear(3, 1)
        self.dead = nn.Linear(3, 1)
        self.head = nn.Linear(1, 1)
        self.frozen = nn.Linear(3, 1).requires_grad_(False)
        with torch.no_grad():
            self.dead.weight.zero_()
            self.dead.bias.fill_(-1.0)

    def forward(self, x):
        return self.live(x) + self.head(torch.relu(self.dead(x))) + self.frozen(x)


def _step(model, watch, x):
    loss = model(x).pow(2).mean()
    loss.backward()
    for p in model.parameters():
        p.grad = None
    watch.release_reached()


def test_a_dead_branch_is_named_and_live_hooks_are_released():
    model, watch = TwoBranches(), GradientWatch()
    watch.attach(model)
    assert set(watch._handles) == {'live.weight', 'live.bias', 'dead.weight', 'dead.bias',
                                   'head.weight', 'head.bias'}  # not the frozen layer
    x = torch.randn(8, 3)
    _step(model, watch, x)
    # head.bias gets the upstream gradient; head.weight multiplies relu(dead(x)) == 0
    assert watch.reached == {'live.weight', 'live.bias', 'head.bias'}
    assert set(watch._handles) == {'dead.weight', 'dead.bias', 'head.weight'}
    _step(model, watch, x)
    s = watch.summary()
    assert s == dict(no_grad_tensors=3, no_grad_names=['dead.weight', 'dead.bias',
                                                       'head.weight'], grad_watched=6)
    watch.detach()
    assert watch._handles == {}


def test_an_unused_parameter_is_reported_too():
    model, watch = nn.Linear(2, 2), GradientWatch()
    model.unused = nn.Parameter(torch.ones(1))
    watch.attach(model)
    _step(model, watch, torch.randn(4, 2))
    assert watch.summary()['no_grad_names'] == ['unused']


def test_state_round_trip_a_resumed_run_keeps_what_was_reached():
    """Reached before the interruption, then never again: still reached after the resume."""
    model, before = TwoBranches(), GradientWatch()
    before.attach(model)
    _step(model, before, torch.randn(8, 3))
    resumed = GradientWatch()
    resumed.load_state_dict(before.state_dict())
    resumed.attach(model)
    # only the unreached tensors are hooked again
    assert set(resumed._handles) == {'dead.weight', 'dead.bias', 'head.weight'}
    assert resumed.summary()['no_grad_tensors'] == 3


def test_a_zero_gradient_is_not_a_gradient():
    model, watch = nn.Linear(2, 1), GradientWatch()
    watch.attach(model)
    (model(torch.zeros(4, 2)) * 0).sum().backward()  # gradients exist and are all zero
    watch.release_reached()
    assert model.weight.grad is not None and watch.summary()['no_grad_tensors'] == 2
