"""Pieces shared by the train and test command lines (flags and config loading as in mmdet)."""
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def add_common_args(parser):
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, as key=value pairs (mmengine DictAction), '
             'e.g. train_dataloader.batch_size=2 "model.roi_head.mask_head.dilations=[1,3,5]"')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--unsafe-load', action='store_true',
                        help='allow a full (code-running) unpickle of checkpoints that are not '
                             'weights-only; only for files you trust (sets '
                             'INSPLUG_TRUST_CHECKPOINTS=1)')


def load_config(args):
    """Load ``args.config``, apply ``--cfg-options`` and ``--work-dir`` as mmdet's tools do."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if getattr(args, 'unsafe_load', False):
        from insplug.checkpoints.safe_load import TRUST_ENV
        os.environ[TRUST_ENV] = '1'
    import insplug  # noqa: F401  (registers insplug's scope before the config is read)
    from insplug._mmengine_configs import resolve_config_path
    args.config = resolve_config_path(args.config)
    cfg = Config.fromfile(args.config)
    # strict checkpoint loading (InsplugRunner) for any config that names no runner of its own
    cfg.setdefault('runner_type', 'InsplugRunner')
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS, init_default_scope
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    init_default_scope(cfg.get('default_scope', 'insplug'))
    return RUNNERS.build(cfg)


def run_with_clear_errors(main):
    """Run ``main()``; an unknown ``type`` exits with insplug's explanation, not a traceback."""
    from insplug.registry import explain_unknown_type
    from insplug.checkpoints import CheckpointMismatchError, UnsafeCheckpointError
    try:
        return main()
    except (UnsafeCheckpointError, CheckpointMismatchError) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)
    except KeyError as error:
        message = explain_unknown_type(error)
        if message is None:
            raise
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)
