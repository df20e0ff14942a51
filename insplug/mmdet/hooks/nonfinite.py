"""Stop a diverging run at the first non-finite loss or gradient norm, saying what to change.

mmengine trains on through NaN losses (and mmdet's ``CheckInvalidLossHook`` looks only every
50 iterations, at the total loss, with no advice): the run ends hours later with NaN weights
and an empty evaluation. :class:`NonFiniteLossHook` checks every iteration:

* every loss term the model returned (the keys containing ``loss`` in ``outputs``, the values
  the LoggerHook logs, including the total ``loss``);
* the gradient norm, where the optimizer wrapper computes one (``clip_grad=dict(max_norm=..)``
  logs ``train/grad_norm`` in the message hub; without clipping a non-finite gradient shows up
  as a non-finite loss one iteration later). Skipped under ``AmpOptimWrapper``, whose dynamic
  loss scale makes inf gradients on purpose and skips those steps;

and, on the first non-finite value, raises :class:`NonFiniteLossError` whose message gives the
iteration, the non-finite terms (with the finite ones for comparison), the likely fixes (a lower
learning rate, ``clip_grad``, training without ``--amp``) and the last good checkpoint, which
is kept: the error stops the run before any later checkpoint is written, and
``before_save_checkpoint`` refuses to write a checkpoint whose weights are not finite.
"""
import math
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict
from mmengine.runner import IterBasedTrainLoop

from insplug.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term, gradient norm, or weight."""


def _as_float(value):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        return float(value.detach())
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _uses_amp(optim_wrapper):
    wrappers = optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict) \
        else [optim_wrapper]
    return any(isinstance(w, AmpOptimWrapper) for w in wrappers)


def _first_optim_wrapper(optim_wrapper):
    if isinstance(optim_wrapper, OptimWrapperDict):
        return next(iter(optim_wrapper.values()))
    return optim_wrapper


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` at the first non-finite loss or gradient norm.

    Args:
        check_grad_norm (bool): also check ``train/grad_norm`` (logged with ``clip_grad``).
        check_weights_on_save (bool): refuse to write a checkpoint whose weights hold NaN/inf.
    """

    priority = 'ABOVE_NORMAL'  # before the LoggerHook and the CheckpointHook of the iteration

    def __init__(self, check_grad_norm=True, check_weights_on_save=True):
        self.check_grad_norm = check_grad_norm
        self.check_weights_on_save = check_weights_on_save

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        terms = {}
        for key, value in (outputs or {}).items():
            number = _as_float(value) if 'loss' in key else None
            if number is not None:
                terms[key] = number
        bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
        grad_norm = None
        if self.check_grad_norm and not _uses_amp(runner.optim_wrapper) and \
                'train/grad_norm' in runner.message_hub.log_scalars:
            value = float(runner.message_hub.get_scalar('train/grad_norm').current())
            if not math.isfinite(value):
                grad_norm = value
        if bad or grad_norm is not None:
            message = self._message(runner, batch_idx, terms, bad, grad_norm)
            runner.logger.error(message)
            raise NonFiniteLossError(message)

    def before_save_checkpoint(self, runner, checkpoint):
        if not self.check_weights_on_save:
            return
        bad = [k for k, v in checkpoint.get('state_dict', {}).items()
               if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            message = (f'Training stopped: the weights hold NaN/inf values at iteration '
                       f'{runner.iter + 1} ({len(bad)} tensor(s), first: '
                       f'{", ".join(bad[:3])}); this checkpoint was NOT written. '
                       + self._advice(runner))
            runner.logger.error(message)
            raise NonFiniteLossError(message)

    # ----------------------------------------------------------------------------------------
    def _message(self, runner, batch_idx, terms, bad, grad_norm):
        where = f'iteration {runner.iter + 1}'
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1} of the epoch)'
        found = []
        if bad:
            found.append('non-finite loss term(s): '
                         + ', '.join(f'{k}={v}' for k, v in bad.items()))
        if grad_norm is not None:
            found.append(f'gradient norm={grad_norm}')
        finite = {k: v for k, v in terms.items() if k not in bad}
        if finite:
            found.append(('finite: ' if bad else 'loss terms (all finite): ')
                         + ', '.join(f'{k}={v:.4g}' for k, v in finite.items()))
        return (f'Training stopped at the first non-finite value, at {where}: '
                + '; '.join(found) + '. ' + self._advice(runner))

    @staticmethod
    def _advice(runner):
        wrapper = _first_optim_wrapper(runner.optim_wrapper)
        lrs = sorted({group['lr'] for group in wrapper.optimizer.param_groups})
        lr = ', '.join(f'{v:g}' for v in lrs)
        base = ((runner.cfg.get('optim_wrapper') or {}).get('optimizer') or {}).get('lr')
        if base is not None:
            lr = f'{base:g} in the config, {lr} at this iteration'
        clip = getattr(wrapper, 'clip_grad_kwargs', None)
        if clip:
            clip_advice = (f'lower optim_wrapper.clip_grad (now {dict(clip)}) or the learning '
                           'rate further')
        else:
            clip_advice = 'clip gradients: optim_wrapper.clip_grad=dict(max_norm=35, norm_type=2)'
        if _uses_amp(runner.optim_wrapper):
            amp_advice = 'train without --amp (AmpOptimWrapper is on: fp16 may overflow)'
        else:
            amp_advice = 'train without --amp if you enable it (it is off in this run)'
        last = runner.message_hub.get_info('last_ckpt')
        if last and osp.exists(last):
            kept = (f'The last good checkpoint is kept: {last} (after the fix, continue with '
                    f'`tools/train.py CONFIG --resume {last}` or start again).')
        else:
            kept = 'No checkpoint was written before this iteration; start again after the fix.'
        return (f'Likely fixes: lower the learning rate (lr {lr}; '
                f'--cfg-options optim_wrapper.optimizer.lr=...), {clip_advice}, {amp_advice}. '
                + kept)
