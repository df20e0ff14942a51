"""``InsplugRunner``: mmengine's Runner, refusing checkpoints that do not fit the model.

mmengine loads ``load_from`` and ``--resume`` checkpoints non-strictly: a checkpoint of another
model only logs warnings, and ``tools/test.py`` then evaluates a model with random heads
(AP 0.000, "as if all were well"). This runner checks the fit first
(:func:`insplug.checkpoints.check_state_dict_fit`):

* resume, and testing: every model tensor must be filled with its shape, and no checkpoint
  tensor left over, or :class:`CheckpointMismatchError` says how many keys are missing,
  unexpected or mismatched (with the first few), which model the checkpoint seems to come from,
  and that ``tools/convert_checkpoint.py`` converts official checkpoints;
* ``load_from`` for fine-tuning: strict as well, unless the config says
  ``load_from_strict = False``; then the checkpoint loads partially and a warning summarises
  what was not loaded.

It also trains distributed on CPU, which mmengine 0.10.7 cannot: its ``init_dist`` calls
``torch.cuda.set_device`` ("Found no NVIDIA driver") and its DDP wrapper passes
``device_ids=[LOCAL_RANK]`` for a CPU module. Without CUDA this runner initialises the process
group itself with the ``gloo`` backend (``env_cfg.dist_cfg.backend`` is ignored there: NCCL
needs GPUs) and wraps the model in ``MMDistributedDataParallel`` with ``device_ids=None``.
Launch with ``tools/dist_train.sh CONFIG NPROC`` (torchrun, as mmdet's).

insplug's configs select it with ``runner_type = 'InsplugRunner'`` (so mmdet's own
``tools/train.py`` uses it too); insplug's tools use it for any config that names no runner.
"""
import datetime

import torch
import torch.distributed as torch_dist
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from insplug.checkpoints.fit import CheckpointMismatchError, check_state_dict_fit, state_dict_of
from insplug.registry import RUNNERS


@RUNNERS.register_module()
class InsplugRunner(Runner):
    """Runner whose checkpoint loading is strict (see the module docstring)."""

    @classmethod
    def from_cfg(cls, cfg):
        runner = super().from_cfg(cfg)
        runner._load_from_strict = cfg.get('load_from_strict', True)
        return runner

    def setup_env(self, env_cfg):
        if self.distributed and not torch.cuda.is_available() and not torch_dist.is_initialized():
            timeout = env_cfg.get('dist_cfg', {}).get('timeout', 1800)
            torch_dist.init_process_group(backend='gloo',
                                          timeout=datetime.timedelta(seconds=timeout))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available() and model_wrapper_cfg is None:
            model_wrapper_cfg = dict(
                type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False))
        return super().wrap_model(model_wrapper_cfg, model)

    def resume(self, filename, resume_optimizer=True, resume_param_scheduler=True,
               map_location='default'):
        self._resuming = True
        try:
            return super().resume(filename, resume_optimizer, resume_param_scheduler,
                                  map_location)
        finally:
            self._resuming = False

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):  # noqa: B006  (mmengine's signature)
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        fit = check_state_dict_fit(model.state_dict(), state_dict_of(checkpoint))
        must_fit = strict or getattr(self, '_resuming', False) or getattr(
            self, '_load_from_strict', True)
        if not fit.ok:
            if must_fit:
                raise CheckpointMismatchError(fit.explain(filename, checkpoint))
            self.logger.warning(f'load_from_strict=False: {filename} loaded partially; '
                                f'{fit.summary()}')
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict=False,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
