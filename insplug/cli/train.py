"""Train a detector from a config: the flags and behaviour of mmdet's ``tools/train.py``.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...]

``--resume`` with no value continues from the latest checkpoint in the work dir (the file that
``WORK_DIR/last_checkpoint`` names); ``--resume CKPT`` from that file. Model, optimizer,
schedulers, iteration/epoch counters and message hub are restored by mmengine; the python,
numpy and torch RNG states by insplug's ``RNGStateHook`` (on in every insplug config), so with
``randomness=dict(seed=S, deterministic=True)`` on CPU a resumed run logs the same losses, bit
for bit, as an uninterrupted one (tests/foundation/test_resume_exact.py). Checkpoints are
written atomically (``AtomicCheckpointHook``): a run killed while saving leaves the previous
checkpoint and ``last_checkpoint`` intact.

A run whose loss or gradient norm becomes NaN/inf stops there (``NonFiniteLossHook``), prints
the iteration, the terms, the likely fix and the last good checkpoint, and exits with status 1.
"""
import argparse
import sys

from insplug.cli.common import add_common_args, build_runner, load_config, run_with_clear_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (insplug / mmdet)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or with no value from the latest '
                             'checkpoint in the work dir')
    add_common_args(parser)
    return parser.parse_args(argv)


def configure(args):
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
                               'base_batch_size=N)` in the config (N: the batch size its LR '
                               'was tuned for)')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)

    def train():
        runner = build_runner(configure(args))
        runner.train()
        return runner
    try:
        return run_with_clear_errors(train)
    except RuntimeError as error:
        from insplug.mmdet.hooks.nonfinite import NonFiniteLossError
        if not isinstance(error, NonFiniteLossError):
            raise
        print(f'error: {error}', file=sys.stderr)  # also in the log; no traceback needed
        sys.exit(1)


if __name__ == '__main__':
    main()
