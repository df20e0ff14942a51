"""Training hooks that insplug configs switch on by default (``configs/_base_/default_runtime.py``).

* :class:`~insplug.mmdet.hooks.nonfinite.NonFiniteLossHook`: stop at the first NaN/inf loss or
  gradient norm, saying which terms, the likely fix, and which checkpoint is the last good one;
* :class:`~insplug.mmdet.hooks.rng_state.RNGStateHook`: RNG states saved in every checkpoint
  and restored on ``--resume``, so a resumed run repeats the uninterrupted one bit for bit;
* :class:`~insplug.mmdet.hooks.atomic_checkpoint.AtomicCheckpointHook`: checkpoints and the
  ``last_checkpoint`` pointer are written to a temporary file and renamed into place.
"""
