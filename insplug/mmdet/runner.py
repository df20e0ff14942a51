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

insplug's configs select it with ``runner_type = 'InsplugRunner'`` (so mmdet's own
``tools/train.py`` uses it too); insplug's tools use it for any config that names no runner.
"""
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
