"""Train a detector from a config: the flags and behaviour of mmdet's ``tools/train.py``.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...]

``--resume`` with no value continues from the latest checkpoint in the work dir (model,
optimizer, scheduler, iteration/epoch counters and RNG states are restored by mmengine).
"""
import argparse

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
    return run_with_clear_errors(train)


if __name__ == '__main__':
    main()
