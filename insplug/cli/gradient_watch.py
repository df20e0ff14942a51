"""Trainable parameters that never received a non-zero gradient during a leaderboard entry.

A run can lower its loss while most of its network learns nothing. The SharpMask refinement at
km = ks = 16 did this on a trained DeepMask. Its single-channel last module was negative at every
pixel at initialisation, so the ReLU passed nothing: every refinement weight got a zero gradient,
the final bias alone learned the foreground prior, and the loss fell from 0.63 to 0.50 while
the mask AP stayed 0.000. The loss trace (``insplug.cli.loss_trace``) cannot see that; this
watch can.

Each trainable parameter gets a hook that runs after its gradient is accumulated (the same
moment in every optimiser wrapper: before the step, clipping or zeroing). The first non-zero
gradient marks the parameter as reached, and ``release_reached`` then removes its hook, so the
cost is confined to the first iterations. The record travels in checkpoint ``meta``, so a
resumed run keeps what the iterations before the interruption reached.

Parameters with ``requires_grad=False`` (frozen stages, a chained entry's frozen trunk) are not
watched. A parameter the loss never uses (a branch a config switches off) is reported too:
it is not learning either, and the row should say so.
"""
from typing import Dict, List

import torch
from torch import nn

META_KEY = 'leaderboard_gradient_watch'


class GradientWatch:
    """Which trainable parameters of a model have had a non-zero gradient so far."""

    def __init__(self):
        self.watched: List[str] = []
        self.reached = set()
        self._handles: Dict[str, torch.utils.hooks.RemovableHandle] = {}

    def attach(self, model: nn.Module):
        """Hook every trainable parameter of ``model`` not yet reached."""
        self.watched = [name for name, p in model.named_parameters() if p.requires_grad]
        for name, param in model.named_parameters():
            if param.requires_grad and name not in self.reached:
                self._handles[name] = param.register_post_accumulate_grad_hook(
                    self._on_gradient(name))

    def _on_gradient(self, name: str):
        def hook(param: torch.Tensor):
            # the hook is not removed here: removing it while autograd runs the hooks would
            # change the collection being run
            if param.grad is not None and bool(param.grad.ne(0).any()):
                self.reached.add(name)
        return hook

    def release_reached(self):
        """Remove the hooks of the parameters already reached (call between iterations)."""
        for name in [n for n in self._handles if n in self.reached]:
            self._handles.pop(name).remove()

    def detach(self):
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()

    def state_dict(self) -> dict:
        return dict(reached=sorted(self.reached))

    def load_state_dict(self, state: dict):
        self.reached = set(state['reached'])

    def summary(self, listed: int = 10) -> dict:
        """``no_grad_tensors``: how many watched parameters never had a non-zero gradient,
        ``no_grad_names``: the first ``listed`` of them, ``grad_watched``: how many were watched
        (0: the run recorded no watch)."""
        never = [name for name in self.watched if name not in self.reached]
        return dict(no_grad_tensors=len(never), no_grad_names=never[:listed],
                    grad_watched=len(self.watched))
