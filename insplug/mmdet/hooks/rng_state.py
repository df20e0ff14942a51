"""RNG states in checkpoints, restored on resume: a resumed run repeats the uninterrupted one.

mmengine's checkpoints hold the model, optimizer, schedulers, counters and message hub, but no
random-number-generator state: after ``--resume`` the python, numpy and torch generators start
from the seed again, so data augmentation (numpy / python ``random``) and samplers inside the
model (torch) draw other numbers than the uninterrupted run would have. :class:`RNGStateHook`
closes that gap:

* ``before_save_checkpoint``: stores the states under ``checkpoint['rng_state']``, as plain
  python values and tensors only (loads with ``torch.load(weights_only=True)``, no allow-list):

  - ``python``: ``dict(version=int, state=list of 625 ints, gauss=float or None)``
    (``random.getstate()``);
  - ``numpy``: ``dict(bit_generator='MT19937', keys=int64 tensor (624,), pos=int,
    has_gauss=int, cached_gaussian=float)`` (``np.random.get_state()``);
  - ``torch``: uint8 tensor (``torch.get_rng_state()``);
  - ``torch_cuda``: list of uint8 tensors, one per visible GPU (only where CUDA is in use);
  - ``sampler_seed``: int or None (the train sampler's seed).

* on resume (``after_load_checkpoint`` with ``runner._resume``): keeps them and restores them
  at the last moment before the next training batch is drawn: ``before_train_epoch`` for
  epoch-based loops; for iteration-based loops, after mmengine has skipped the batches already
  trained (that skip runs the data pipeline, which draws random numbers).

* validation during training (``before_val`` .. ``after_val``) gets the generators back as they
  were: evaluating does not change the training's random stream, so the state saved at an epoch
  end is the state the next epoch starts from whether or not validation ran in between.

The train sampler's order needs no saved state: mmengine's ``DefaultSampler`` shuffles with
``seed + epoch`` and ``InfiniteSampler`` from ``seed``; a resume restores the checkpoint's seed
(mmengine) and this hook gives it to the sampler built before the checkpoint was read.
Dataloader workers are seeded from the torch generator and mmengine's ``worker_init_fn`` at
each epoch, so they repeat too; but ``persistent_workers=True`` keeps worker generators running
across epochs and those states are not in the checkpoint: a resume then logs a warning (exact
resume needs ``num_workers=0`` or ``persistent_workers=False``). In distributed training the
checkpoint holds rank 0's state and every rank restores it.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from insplug.registry import HOOKS


def get_rng_state():
    """The python, numpy and torch (CPU, CUDA) generator states as weights-only-safe values."""
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = dict(
        python=dict(version=int(version), state=[int(v) for v in py_state], gauss=gauss),
        numpy=dict(bit_generator=str(name), keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['torch_cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state):
    """Restore the generators from :func:`get_rng_state`'s dict."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state']), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['bit_generator'], np.asarray(npy['keys']).astype(np.uint32),
                         int(npy['pos']), int(npy['has_gauss']), float(npy['cached_gaussian'])))
    torch.set_rng_state(torch.as_tensor(state['torch'], dtype=torch.uint8).cpu())
    cuda = state.get('torch_cuda')
    if cuda and torch.cuda.is_available():
        for device, s in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(s, dtype=torch.uint8).cpu(), device)


def _train_sampler(runner):
    loader = runner.train_dataloader
    sampler = getattr(loader, 'sampler', None)
    if sampler is not None and hasattr(sampler, 'seed'):
        return sampler
    batch_sampler = getattr(loader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None)
    return sampler if hasattr(sampler, 'seed') else None


class _RestoreBeforeNext:
    """Iterator proxy: skips ``skip`` batches, then restores the RNG state before the next."""

    def __init__(self, iterator, skip, state):
        self._iterator, self._skip, self._state = iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        elif self._state is not None:
            set_rng_state(self._state)
            self._state = None
        return next(self._iterator)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the RNG states in every checkpoint and restore them on resume (module docstring)."""

    priority = 'VERY_LOW'  # restore after the other hooks' before_train_epoch

    def __init__(self):
        self._pending = None  # state read from the resumed checkpoint, not yet restored
        self._before_val = None  # training's state while validation runs

    def before_save_checkpoint(self, runner, checkpoint):
        state = self._before_val if self._before_val is not None else get_rng_state()
        sampler = _train_sampler(runner)
        seed = getattr(sampler, 'seed', None)
        checkpoint['rng_state'] = dict(state, sampler_seed=None if seed is None else int(seed))

    def after_load_checkpoint(self, runner, checkpoint):
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing): the config's seed rules
        state = checkpoint.get('rng_state')
        if state is None:
            print_log('RNGStateHook: the resumed checkpoint holds no RNG state (written '
                      'without this hook): training goes on, but not bit-identically to an '
                      'uninterrupted run.', logger='current', level=30)
            return
        self._pending = state
        sampler = _train_sampler(runner)
        seed = state.get('sampler_seed')
        if sampler is not None and seed is not None and sampler.seed != seed:
            sampler.seed = seed
            if hasattr(sampler, '_indices_of_rank'):  # InfiniteSampler: order fixed at init
                sampler.indices = sampler._indices_of_rank()
        loader = runner.train_dataloader
        if getattr(loader, 'persistent_workers', False) and loader.num_workers > 0:
            print_log('RNGStateHook: train_dataloader has persistent_workers=True: the '
                      'workers\' random streams are not in the checkpoint, so data augmentation '
                      'after this resume differs from an uninterrupted run. Set '
                      'persistent_workers=False (or num_workers=0) for an exact resume.',
                      logger='current', level=30)

    def before_train_epoch(self, runner):
        if self._pending is None:
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop skips trained batches
            loop.dataloader_iterator = _RestoreBeforeNext(
                loop.dataloader_iterator, loop.iter, self._pending)
        else:
            set_rng_state(self._pending)
        self._pending = None
        print_log('RNGStateHook: python, numpy and torch RNG states restored from the '
                  'checkpoint.', logger='current')

    def before_val(self, runner):
        self._before_val = get_rng_state()

    def after_val(self, runner):
        if self._before_val is not None:
            set_rng_state(self._before_val)
        self._before_val = None
