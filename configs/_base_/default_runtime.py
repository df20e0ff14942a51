# insplug runtime: mmdet's defaults, insplug's scope, and insplug's safety hooks.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'insplug'
custom_imports = dict(imports=['insplug'], allow_failed_imports=False)
# Every insplug config inherits these; a config that sets its own `custom_hooks` must list
# them too (a list replaces the inherited one): tests/foundation/test_nonfinite.py checks that
# every training config under configs/ has all four.
custom_hooks = [
    # fails fast, naming the head, when a head's `num_classes` does not match the dataset
    dict(type='NumClassCheckHook'),
    # stops at the first NaN/inf loss term or gradient norm: iteration, terms, fix, last ckpt
    dict(type='NonFiniteLossHook'),
    # python/numpy/torch RNG states in every checkpoint, restored by --resume (exact resume)
    dict(type='RNGStateHook'),
    # checkpoints and `last_checkpoint` written to a temporary file, then renamed into place
    dict(type='AtomicCheckpointHook'),
]
