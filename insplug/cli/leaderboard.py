"""Train, evaluate and rank configs on one data set: ``leaderboard.md``, ``.json`` and ``.png``.

    python tools/leaderboard.py CONFIGS... --data nuclei|shapes [--data-root DIR] [--out DIR]
        [--max-iters N | --max-epochs N] [--seed S] [--latency-images 5] [--workers W]

For each config, in order:

1. train it with insplug's runner (``InsplugRunner``: strict, weights-only checkpoints) in
   ``OUT/work_dirs/NAME``, resuming from the latest checkpoint there when one exists (so an
   interrupted board continues where it stopped; mmengine restores model, optimizer, schedule
   and RNG states). An entry whose ``OUT/work_dirs/NAME/leaderboard_entry.json`` exists and was
   made with the same budget is finished: it is read back, not trained again.
2. evaluate the final model on the val split with COCO segm metrics (mask AP, AP50, AP75, APs;
   the config's ``val_evaluator``, with ``segm`` added when it is missing);
3. measure parameters, FLOPs per image (``torch.utils.flop_counter`` over one inference, as
   ``tools/benchmark.py`` counts them) and the inference latency (``model.test_step``:
   pre-processing, forward and post-processing, batch 1, median over ``--latency-images`` real
   val images, each timed once after one warm-up; the timed run's detections are counted);
4. keep the training loss trace (``insplug.cli.loss_trace``): a row whose loss ended higher
   than it began, or met a non-finite value, is marked diverged; and watch the gradients
   (``insplug.cli.gradient_watch``): a row names the trainable tensors that never had a
   non-zero gradient.

Train time is the time spent in ``runner.train()``, summed over resumed runs (it is kept in
each checkpoint's ``meta``). ``--clock wall`` (default) measures train time and latency in wall
seconds; ``--clock cpu`` in the process's CPU seconds (all threads, ``time.process_time``), which
stay comparable between entries when the board shares the machine with other work (e.g. run with
``nice``); the clock is recorded in the board. ``--data`` names the data set: ``nuclei``
(``../shared/data/nuclei``, DSB2018, ``NucleiDataset``) or ``shapes`` (the bundled synthetic
set, ``data/shapes``); every loader and evaluator of the config is pointed at it
(``--data-root`` to use another copy).
``--max-iters N`` replaces the schedule by N iterations (short linear warm-up, then constant LR)
and ``--max-epochs N`` caps an epoch-based schedule at N epochs: the budget is recorded in each
row. A rerun with another budget or data set trains that entry again, continuing from its work
dir's last checkpoint (a longer budget extends the run); use a new ``--out`` for a fresh board.
Progress (entry, iteration, elapsed time and the ETA of the whole board: the time per entry so
far times the entries left) is printed as it goes; leaderboard.md / .json / .png are rewritten
after every entry, so a partial board is readable while the rest trains. A config may set
``leaderboard = dict(method='SparseInst', family='query-based')``; without it the method is the
config's file name and the family is guessed from the model type.

A board longer than one sitting: ``--entries DIR`` also keeps each finished row as
``DIR/NAME.json`` (with the commit, date, machine, thread count and a digest of the config) and
reads finished rows back from there, so rows can be committed and the board continued
elsewhere or split over processes (each with its own ``--out``). An entry is finished only for
the same data, budget and config digest: a changed config trains again. ``--collect`` trains
nothing: it writes the board from the finished rows and lists the other configs as not run yet.

A chained entry (``leaderboard = dict(..., init_from='deepmask_nuclei')``: SharpMask trains its
refinement on a trained DeepMask) starts from the final checkpoint of that entry, which must
have been trained earlier in the same ``--out`` (a row read back from ``--entries`` has no
checkpoint); its train time includes the parent's (kept in the parent's checkpoint), since the
row's model cost both. Once the chained entry has checkpoints of its own it resumes from them.
BoxCaseg's row is made of steps in the same way (``step_of``, ``salient``,
``pseudo_masks_from``: see :mod:`insplug.cli.board_steps`).
"""
import argparse
import datetime
import hashlib
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

import torch

from insplug.cli.benchmark import _dets_per_image, _sync, config_name, resolve_config
from insplug.cli.board_steps import point_salient_at_shapes, train_on_pseudo_masks
from insplug.cli.gradient_watch import META_KEY as GRADIENT_WATCH_KEY
from insplug.cli.gradient_watch import GradientWatch
from insplug.cli.loss_trace import META_KEY as LOSS_TRACE_KEY
from insplug.cli.loss_trace import LossTrace

DATA = {
    'nuclei': dict(type='NucleiDataset', root=None),  # resolved by nuclei_root()
    'shapes': dict(type='ShapesDataset', root='data/shapes/'),
}
ENTRY_FILE = 'leaderboard_entry.json'
RESULT_NEUTRAL_OPTIONS = ('default_hooks.', 'log_processor.')  # --cfg-options keys
TRAIN_TIME_KEY = 'leaderboard_train_s'
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}
_clock = CLOCKS['wall']  # set by main(): what train time and latency are measured in
# family of a model type (top-level ``model.type``), for configs that do not set it
FAMILIES = {
    'MaskRCNN': 'two-stage', 'PointRend': 'two-stage', 'CenterMask': 'one-stage + RoI',
    'BlendMask': 'one-stage', 'EmbedMask': 'one-stage', 'PolarMask': 'one-stage',
    'YOLACT': 'one-stage', 'YOLACTProtonet': 'one-stage', 'SOLO': 'one-stage (grid)',
    'SOLOv2': 'one-stage (grid)', 'SparseInst': 'query-based',
    'BottomUpSegmentor': 'bottom-up',
}
METRICS = [('mask_ap', 'segm_mAP'), ('ap50', 'segm_mAP_50'), ('ap75', 'segm_mAP_75'),
           ('aps', 'segm_mAP_s')]


def log(message):
    print(f'[leaderboard] {message}', flush=True)


def _fmt_s(seconds):
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def nuclei_root():
    """``$INSPLUG_SHARED/data/nuclei/``, else ``../shared/data/nuclei/`` next to the repo."""
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    shared = os.environ.get('INSPLUG_SHARED', osp.join(osp.dirname(repo), 'shared'))
    return osp.join(shared, 'data', 'nuclei') + '/'


def _innermost(dataset):
    while 'dataset' in dataset:  # wrappers such as RepeatDataset
        dataset = dataset.dataset
    return dataset


def point_at_data(cfg, data, root, workers=None):
    """Point every loader and evaluator of ``cfg`` at ``root`` (train/ and val/ COCO splits)."""
    root = root.rstrip('/') + '/'
    for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                       ('test_dataloader', 'val')):
        loader = cfg[key]
        if workers is not None:
            loader.num_workers = workers
            loader.persistent_workers = bool(workers) and loader.get('persistent_workers', False)
        dataset = _innermost(loader.dataset)
        dataset.type = DATA[data]['type']
        dataset.data_root = root
        dataset.ann_file = f'{split}/annotations.json'
        dataset.data_prefix = dict(img=f'{split}/images/')
        dataset.pop('metainfo', None)  # the data set's own classes
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg[key]
        evaluator.ann_file = root + 'val/annotations.json'
        metric = evaluator.get('metric', 'bbox')
        metric = [metric] if isinstance(metric, str) else list(metric)
        if 'segm' not in metric:
            evaluator.metric = metric + ['segm']
    return cfg


def apply_budget(cfg, max_iters=None, max_epochs=None):
    """Cap the schedule (see the module docstring); returns the budget as a string."""
    if max_iters:
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
        cfg.train_dataloader.pop('batch_sampler', None)
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                             val_interval=10 ** 9)
        warmup = max(1, min(50, max_iters // 5))
        cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                                    begin=0, end=warmup)]
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                            interval=min(max_iters, 1000), max_keep_ckpts=1)
        cfg.log_processor = dict(by_epoch=False)
        return f'{max_iters} iters'
    if max_epochs:
        if cfg.train_cfg.get('type') != 'EpochBasedTrainLoop':
            raise SystemExit(f'error: --max-epochs needs an epoch-based schedule; '
                             f'{cfg.filename} has {cfg.train_cfg.get("type")} (use --max-iters)')
        cfg.train_cfg.max_epochs = max_epochs
        cfg.train_cfg.val_interval = 10 ** 9
        return f'{max_epochs} epochs'
    # the config's own schedule; the board evaluates once at the end
    cfg.train_cfg.val_interval = 10 ** 9
    loop = cfg.train_cfg
    if 'max_iters' in loop:
        return f'{loop.max_iters} iters (config)'
    return f'{loop.get("max_epochs")} epochs (config)'


def _make_hooks(board, resuming=True):
    from mmengine.hooks import Hook

    class LeaderboardHook(Hook):
        """Train time, the loss trace and the gradient watch kept in checkpoints (over resumes);
        progress, ETA."""
        # LOW: after the loggers, but before CheckpointHook (VERY_LOW), so that a checkpoint
        # saved after iteration i carries the loss of iteration i
        priority = 'LOW'

        def __init__(self):
            self.before = 0.0  # seconds trained by earlier (interrupted) runs
            self.start = None
            self.val_s = 0.0  # validation inside runner.train() (mmengine's loops validate
            self.metrics = None  # after the last iteration / epoch): not train time
            self.val_start = None
            self.loss_trace = LossTrace()
            self.gradient_watch = GradientWatch()

        def after_load_checkpoint(self, runner, checkpoint):
            meta = checkpoint.get('meta', {})
            self.before = float(meta.get(TRAIN_TIME_KEY, 0.0))
            if resuming and LOSS_TRACE_KEY in meta:  # not a chained parent's trace
                self.loss_trace.load_state_dict(meta[LOSS_TRACE_KEY])
            if resuming and GRADIENT_WATCH_KEY in meta:
                self.gradient_watch.load_state_dict(meta[GRADIENT_WATCH_KEY])

        def before_train(self, runner):
            self.start = _clock()
            board.entry_start_iter = runner.iter
            self.gradient_watch.attach(runner.model)

        def train_seconds(self):
            return self.before + (_clock() - self.start - self.val_s if self.start else 0.0)

        def before_val_epoch(self, runner):
            self.val_start = _clock()

        def after_val_epoch(self, runner, metrics=None):
            if self.start is not None and self.val_start is not None:
                self.val_s += _clock() - self.val_start
            self.metrics = metrics

        def before_save_checkpoint(self, runner, checkpoint):
            checkpoint.setdefault('meta', {})[TRAIN_TIME_KEY] = self.train_seconds()
            checkpoint['meta'][LOSS_TRACE_KEY] = self.loss_trace.state_dict()
            checkpoint['meta'][GRADIENT_WATCH_KEY] = self.gradient_watch.state_dict()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if outputs and 'loss' in outputs:
                self.loss_trace.update(outputs['loss'])
            self.gradient_watch.release_reached()
            done = runner.iter + 1
            if done % board.progress_interval == 0 or done == runner.max_iters:
                board.progress(done, runner.max_iters)

        def after_train(self, runner):
            self.gradient_watch.detach()
    return LeaderboardHook()


class Board:
    """Progress of the whole board: entries done, and the iterations of the current one."""

    def __init__(self, num_entries, progress_interval=20):
        self.num_entries = num_entries
        self.progress_interval = progress_interval
        self.started = time.time()
        self.index = 0
        self.done_fraction = 0.0  # entries finished (trained here), as a count
        self.trained_time = 0.0  # seconds spent on entries trained in this run
        self.entry_started = None
        self.entry_start_iter = 0
        self.skipped = 0
        self.train_shares = []  # share of each finished entry's wall time spent training

    def eta(self, fraction_of_entry=0.0):
        """Seconds left for the board: the time per entry so far times the entries left."""
        worked = self.trained_time + (time.time() - self.entry_started
                                      if self.entry_started else 0.0)
        done = self.done_fraction + fraction_of_entry
        if done <= 0:
            return None
        left = self.num_entries - self.skipped - done
        return worked / done * left

    def progress(self, it, max_iters):
        run_iters = max(it - self.entry_start_iter, 1)
        # evaluation and latency follow the training: scale by the training share of the
        # entries finished so far (0.8 before any)
        share = statistics.mean(self.train_shares) if self.train_shares else 0.8
        fraction = share * run_iters / max(max_iters - self.entry_start_iter, 1)
        eta = self.eta(fraction)
        log(f'entry {self.index + 1}/{self.num_entries}: iter {it}/{max_iters}; board elapsed '
            f'{_fmt_s(time.time() - self.started)}, ETA '
            f'{_fmt_s(eta) if eta is not None else "?"}')


def config_digest(cfg, cfg_options=None):
    """SHA-1 (12 hex digits) of a config's resolved content: a changed config or base differs.

    ``cfg_options`` (``--cfg-options``) are part of it, except the ones that cannot change a
    result (``default_hooks.*``, ``log_processor.*``: checkpoint and log intervals), so a row
    trained with checkpoints every 50 iterations is the config's row, and one trained with
    another learning rate is not.
    """
    options = {key: value for key, value in (cfg_options or {}).items()
               if not key.startswith(RESULT_NEUTRAL_OPTIONS)}
    if options:
        cfg = cfg.copy()
        cfg.merge_from_dict(options)
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _git_commit():
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        return subprocess.run(['git', '-C', repo, 'rev-parse', '--short', 'HEAD'],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _machine():
    return dict(processor=platform.processor() or platform.machine(), cpus=os.cpu_count())


def finished_row(paths, data, budget, digest):
    """The first of ``paths`` holding a row made with this data, budget and config digest."""
    for path in paths:
        if not osp.isfile(path):
            continue
        with open(path) as f:
            row = json.load(f)
        if (row.get('budget') == budget and row.get('data') == data
                and row.get('config_digest', digest) == digest):
            return row, path
    return None, None


def _has_checkpoint(work_dir):
    from mmengine.runner import find_latest_checkpoint
    return osp.isdir(work_dir) and find_latest_checkpoint(work_dir) is not None


def parent_checkpoint(out, name):
    """The final checkpoint of entry ``name`` trained in ``out`` (a chained entry's start)."""
    from mmengine.runner import find_latest_checkpoint
    work_dir = osp.join(out, 'work_dirs', name)
    checkpoint = find_latest_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if not osp.isfile(osp.join(work_dir, ENTRY_FILE)) or checkpoint is None:
        raise RuntimeError(
            f'this entry starts from the trained {name} (leaderboard.init_from or '
            f'pseudo_masks_from), but {work_dir} '
            f'holds no finished {name}: list {name} before it on the same command line, with '
            'the same --out (a row read back from --entries has no checkpoint)')
    return checkpoint


def _leaderboard_meta(cfg, name):
    meta = dict(cfg.get('leaderboard', {}))
    model_type = cfg.model.get('type', '?')
    meta.setdefault('method', name)
    meta.setdefault('family', FAMILIES.get(model_type, model_type))
    return meta


def _latency_and_flops(model, dataloader, num_images, device='cpu'):
    """Median ``test_step`` latency (ms, batch 1) on real images; FLOPs/image of the first.

    Two runs per image: a warm-up (the FLOP-counting pass for the first image) and the timed
    run, whose detections are the ones counted (a third run only to count them costs minutes
    at 400 kept detections per image).
    """
    from torch.utils.flop_counter import FlopCounterMode
    from mmengine.dataset import pseudo_collate
    dataset = dataloader.dataset
    model.eval()
    times, dets, gflops = [], [], None
    with torch.no_grad():
        for i in range(min(num_images, len(dataset))):
            data = pseudo_collate([dataset[i]])
            if gflops is None:
                counter = FlopCounterMode(display=False)
                with counter:
                    model.test_step(data)
                gflops = counter.get_total_flops() / 1e9
            else:
                model.test_step(data)  # warm-up at this image's shape
            _sync(device)
            start = _clock()
            outputs = model.test_step(data)
            _sync(device)
            times.append(_clock() - start)
            dets.append(_dets_per_image(outputs))
    return dict(latency_ms=statistics.median(times) * 1e3 if times else None,
                gflops=gflops, dets_per_img=statistics.mean(dets) if dets else None,
                input_shape=list(data['inputs'][0].shape[-2:]) if times else None)


def _load(config):
    """``(cfg, name)`` of a config path or name, as written (not pointed at any data yet)."""
    from mmengine.config import Config
    from insplug._mmengine_configs import resolve_config_path
    path = resolve_config(resolve_config_path(config))
    return Config.fromfile(path), config_name(path)


def _point_and_place(cfg, args, work_dir):
    """Point ``cfg`` at the board's data, to train in ``work_dir`` with the board's seed."""
    from mmengine.registry import init_default_scope
    root = args.data_root or DATA[args.data]['root'] or nuclei_root()
    point_at_data(cfg, args.data, root, args.workers)
    cfg.work_dir = work_dir
    cfg.setdefault('runner_type', 'InsplugRunner')
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=args.seed)
    init_default_scope(cfg.get('default_scope', 'insplug'))
    return cfg


def measure(args, out):
    """``--measure N``: CPU seconds per training iteration of each config, and the iterations
    that fit ``--size-cpu-min`` (see :mod:`insplug.cli.board_sizing`); writes ``sizing.json``."""
    import insplug  # noqa: F401
    from insplug.cli.board_sizing import iterations_for, measure_config
    from insplug.cli.common import build_runner
    sizes = {}
    for config in args.configs:
        cfg, name = _load(config)
        _point_and_place(cfg, args, osp.join(out, 'measure', name))
        # a step's cost is its own: no parent's pseudo masks (the true ones time the same)
        _prepare_steps(cfg, out, None, pseudo_masks=False)
        if args.cfg_options:  # e.g. a curriculum's start set to the full length
            cfg.merge_from_dict(args.cfg_options)
        row = measure_config(cfg, args.measure, build_runner)
        row.update(threads=torch.get_num_threads(), size_cpu_min=args.size_cpu_min,
                   fitting_iters=iterations_for(args.size_cpu_min, row['cpu_s_per_iter']))
        sizes[name] = row
        log(f"{name}: {row['cpu_s_per_iter']:.2f} CPU s / iteration ({row['threads']} "
            f"thread(s), data loading included); {row['fitting_iters']} iterations fit "
            f"{args.size_cpu_min:g} CPU-minutes (the config has {row['config_max_iters']})")
        with open(osp.join(out, 'sizing.json'), 'w') as f:
            json.dump(sizes, f, indent=2)
    return sizes


def _prepare_steps(cfg, out, work_dir, pseudo_masks=True):
    """An entry made of steps (``insplug/cli/board_steps.py``); returns the earlier steps' s."""
    meta = cfg.get('leaderboard', {})
    if meta.get('salient') == 'shapes':
        point_salient_at_shapes(cfg.train_dataloader.dataset.salient, out)
    parent = meta.get('pseudo_masks_from')
    if not parent or not pseudo_masks:
        return 0.0
    os.makedirs(work_dir, exist_ok=True)
    parent_dir = osp.join(out, 'work_dirs', parent)
    return train_on_pseudo_masks(_innermost(cfg.train_dataloader.dataset), work_dir, parent_dir,
                                 osp.join(parent_dir, ENTRY_FILE),
                                 parent_checkpoint(out, parent), _clock)


def run_entry(config, args, board, out):
    """Train (or resume), evaluate and measure one config; returns its row (a dict)."""
    import insplug  # noqa: F401
    from insplug.cli.common import build_runner

    cfg, name = _load(config)
    work_dir = osp.join(out, 'work_dirs', name)
    entry_paths = [osp.join(work_dir, ENTRY_FILE)]
    if args.entries:
        entry_paths.append(osp.join(args.entries, f'{name}.json'))
    # before the data paths (machine-specific) are set
    digest = config_digest(cfg, args.cfg_options)
    budget = apply_budget(cfg, args.max_iters, args.max_epochs)
    row, found = finished_row(entry_paths, args.data, budget, digest)
    if row is not None:
        log(f'entry {board.index + 1}/{board.num_entries} {name}: finished earlier '
            f'({found}), not trained again')
        row['cached'] = True
        board.skipped += 1
        return row
    if args.collect:
        log(f'entry {board.index + 1}/{board.num_entries} {name}: not run yet (--collect)')
        board.skipped += 1
        return dict(config=config, name=name, data=args.data, budget=budget,
                    **_leaderboard_meta(cfg, name), pending=True)
    _point_and_place(cfg, args, work_dir)
    cfg.resume = True  # from work_dir's last checkpoint when there is one
    cfg.load_from = None
    init_from = cfg.get('leaderboard', {}).get('init_from')
    if init_from and not _has_checkpoint(work_dir):
        # weights only (iteration 0, a new optimizer); partial when the config says so, e.g.
        # SharpMask's refinement modules are new. The parent's train time comes with it.
        cfg.resume = False
        cfg.load_from = parent_checkpoint(out, init_from)
    steps_s = _prepare_steps(cfg, out, work_dir)  # BoxCaseg's salient set / pseudo masks
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    meta = _leaderboard_meta(cfg, name)

    board.entry_started = time.time()
    runner = build_runner(cfg)
    hook = _make_hooks(board, resuming=cfg.resume)
    runner.register_hook(hook)
    runner.train()
    train_s = hook.train_seconds() + steps_s
    hook.train_seconds_this_run = train_s - hook.before
    metrics = hook.metrics  # the loop's validation after its last iteration / epoch
    if metrics is None:  # resumed a run whose training had finished: nothing validated it
        with torch.no_grad():
            metrics = runner.val()
    log(f'entry {board.index + 1}/{board.num_entries} {name}: trained ({budget}, '
        f'{_fmt_s(train_s)}) and evaluated on val; measuring latency')
    model = runner.model
    row = dict(config=config, name=name, data=args.data, budget=budget, **meta,
               params_m=sum(p.numel() for p in model.parameters()) / 1e6,
               train_s=train_s, iters=runner.iter, cached=False, config_digest=digest,
               commit=_git_commit(), machine=_machine(), threads=torch.get_num_threads(),
               clock=args.clock, finished=_utc_now(), cfg_options=args.cfg_options,
               **hook.loss_trace.summary(), **hook.gradient_watch.summary())
    prefix = runner.val_evaluator.metrics[0].prefix if runner.val_evaluator.metrics else 'coco'
    for key, metric in METRICS:
        value = metrics.get(f'{prefix}/{metric}')
        row[key] = None if value is None or value < 0 else float(value)
    row.update(_latency_and_flops(model, runner.val_dataloader, args.latency_images))
    entry_wall = time.time() - board.entry_started
    board.trained_time += entry_wall
    board.train_shares.append(min(1.0, hook.train_seconds_this_run / max(entry_wall, 1e-6)))
    board.entry_started = None
    board.done_fraction += 1
    for path in entry_paths:
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(row, f, indent=2)
    return row


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')


def _f(value, fmt):
    return '-' if value is None else fmt.format(value)


def _machine_text(machine):
    if isinstance(machine, dict):
        return f"{machine['processor']}, {machine['cpus']} CPUs"
    return machine


def board_markdown(board):
    rows = sorted(board['rows'], key=lambda r: -1 if r.get('mask_ap') is None
                  else r['mask_ap'], reverse=True)
    machine = _machine_text(board['machine'])
    commits = board.get('commits')
    lines = [f"Data: {board['data']} (val: COCO segm); {board['date']}; machine: "
             f"{machine}, torch {board['torch']}, "
             + (f"insplug commit(s) {', '.join(commits)}, " if commits else '')
             + f"{board['threads']} thread(s). Latency: batch 1, median over "
             f"{board['latency_images']} val images, pre-processing to final masks. "
             + ('Train time and latency are CPU time of the process (all threads).'
                if board.get('clock') == 'cpu' else 'Train time and latency are wall time.'),
             '',
             '| rank | method | family | config | budget | params (M) | GFLOPs | train time | '
             'train loss | latency (ms) | mask AP | AP50 | AP75 | APs |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    steps = [r for r in rows if r.get('step_of')]  # part of another row: not ranked
    pending = [r for r in rows if r.get('pending') and not r.get('step_of')]
    rows = [r for r in rows if not r.get('pending') and not r.get('step_of')]
    for rank, r in enumerate(rows, 1):
        if r.get('error'):
            lines.append(f"| - | {r.get('method', r['name'])} | {r.get('family', '-')} | "
                         f"{r['name']} | failed: {r['error']} |" + ' |' * 9)
            continue
        lines.append('| ' + ' | '.join([
            str(rank), r['method'], r['family'], r['name'], r['budget'],
            _f(r['params_m'], '{:.2f}'), _f(r['gflops'], '{:.1f}'), _fmt_s(r['train_s']),
            _loss_cell(r), _f(r['latency_ms'], '{:.0f}'), _f(r['mask_ap'], '{:.3f}'),
            _f(r['ap50'], '{:.3f}'), _f(r['ap75'], '{:.3f}'), _f(r['aps'], '{:.3f}')]) + ' |')
    for r in pending:
        lines.append(f"| - | {r.get('method', r['name'])} | {r.get('family', '-')} | "
                     f"{r['name']} | {r['budget']}: not run yet |" + ' |' * 9)
    if steps:
        lines += ['', 'Steps of a row above (not ranked; their train time is in the row\'s):']
        for r in steps:
            done = ('not run yet' if r.get('pending') else
                    f"mask AP {_f(r.get('mask_ap'), '{:.3f}')}, AP50 {_f(r.get('ap50'), '{:.3f}')}"
                    f" with the val set's true boxes given; train time {_fmt_s(r['train_s'])}")
            lines.append(f"- {r['name']}: step of {r['step_of']} ({r['budget']}): {done}")
    lines += ['', 'AP: COCO mask AP on the val split (a value of -1 from COCOeval, no object '
                  'of that size, is shown as "-"). Train loss: the mean total loss of the first '
                  'and of the last 20 iterations; **diverged** when the run ended higher than it '
                  'began or met a non-finite loss ("-": a row recorded before losses were kept); '
                  '"no gradient": trainable tensors that never had a non-zero gradient, a part '
                  'of the network that did not learn (the entry JSON names them).',
              '']
    return '\n'.join(lines)


def _loss_cell(row):
    if row.get('loss_first') is None:
        return '**diverged** (non-finite)' if row.get('diverged') else '-'
    cell = f"{row['loss_first']:.3g} → {row['loss_last']:.3g}"
    if row.get('diverged'):
        cell += ' **diverged**'
    if row.get('no_grad_tensors'):
        cell += f" **no gradient: {row['no_grad_tensors']} of {row['grad_watched']} tensors**"
    return cell


def board_plot(board, path):
    """Mask AP against inference latency, one labelled point per entry."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    points = [r for r in board['rows'] if r.get('latency_ms') is not None
              and not r.get('pending') and not r.get('step_of')
              and r.get('mask_ap') is not None]
    for r in points:
        ax.scatter(r['latency_ms'], r['mask_ap'])
        ax.annotate(r['method'], (r['latency_ms'], r['mask_ap']), fontsize=7)
    ax.set_xscale('log')  # latencies span 0.1-10 s on the nuclei board
    ax.set_xlabel('inference latency (ms / image, batch 1, log scale)')
    ax.set_ylabel(f"mask AP ({board['data']} val)")
    machine = _machine_text(board['machine'])
    ax.set_title(f"{board['data']} leaderboard: mask AP vs latency ({board['date']}; "
                 f"{machine}; {board['threads']} thread(s))", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(points)


def _common(rows, key, default):
    """The value of ``key`` shared by every trained row (``default`` when none has it)."""
    values = {json.dumps(r[key], sort_keys=True) for r in rows if key in r}
    if not values:
        return default
    return json.loads(values.pop()) if len(values) == 1 else 'mixed'


def write_board(rows, args, out, started):
    trained = [r for r in rows if not r.get('pending') and not r.get('error')]
    board = dict(data=args.data, rows=rows, argv=sys.argv[1:], date=_utc_now(),
                 machine=_common(trained, 'machine', _machine()),
                 torch=torch.__version__,
                 threads=_common(trained, 'threads', torch.get_num_threads()),
                 latency_images=args.latency_images,
                 clock=_common(trained, 'clock', args.clock),
                 commits=sorted({r['commit'] for r in trained if r.get('commit')}),
                 seconds=time.time() - started)
    with open(osp.join(out, 'leaderboard.json'), 'w') as f:
        json.dump(board, f, indent=2)
    table = board_markdown(board)
    with open(osp.join(out, 'leaderboard.md'), 'w') as f:
        f.write(table)
    board_plot(board, osp.join(out, 'leaderboard.png'))
    return board, table


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train, evaluate and rank configs on one set')
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--data', choices=sorted(DATA), required=True)
    parser.add_argument('--data-root', help='the data set folder (train/, val/ COCO splits)')
    parser.add_argument('--out', help='output folder (default work_dirs/leaderboard/DATA)')
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument('--max-iters', type=int, help='train N iterations (constant LR)')
    budget.add_argument('--max-epochs', type=int, help='cap an epoch-based schedule')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--latency-images', type=int, default=5)
    parser.add_argument('--workers', type=int, help='dataloader workers (default: config)')
    parser.add_argument('--threads', type=int, help='torch intra-op threads')
    parser.add_argument('--progress-interval', type=int, default=20,
                        help='print progress every N iterations')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='train time and latency in wall seconds, or CPU seconds of the '
                             'process (comparable when the machine is shared)')
    parser.add_argument('--keep-going', action='store_true',
                        help='record a failing config as a failed row and go on')
    parser.add_argument('--entries', help='also keep finished rows as ENTRIES/NAME.json and '
                        'read them back from there (a board continued elsewhere)')
    parser.add_argument('--collect', action='store_true',
                        help='train nothing: write the board from finished rows only')
    parser.add_argument('--measure', type=int, metavar='N',
                        help='train nothing to the end: time N training iterations of each '
                             'config (CPU s, after 3 warm-up ones) and print the iterations '
                             'fitting --size-cpu-min')
    parser.add_argument('--size-cpu-min', type=float, default=30.0,
                        help='CPU-minutes an entry is sized for (with --measure)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='key=value overrides applied to every config')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or osp.join('work_dirs', 'leaderboard', args.data)
    os.makedirs(out, exist_ok=True)
    if args.measure:
        return measure(args, out)
    started = time.time()
    board = Board(len(args.configs), args.progress_interval)
    rows = []
    for i, config in enumerate(args.configs):
        board.index = i
        eta = board.eta()
        log(f'entry {i + 1}/{len(args.configs)}: {config}; board elapsed '
            f'{_fmt_s(time.time() - started)}, ETA {_fmt_s(eta) if eta is not None else "?"}')
        try:
            rows.append(run_entry(config, args, board, out))
        except Exception as error:  # noqa: BLE001
            if not args.keep_going:
                raise
            log(f'entry {i + 1} FAILED {config}: {type(error).__name__}: {error}')
            board.entry_started = None
            rows.append(dict(config=config, name=config_name(config),
                             error=f'{type(error).__name__}: {error}'))
        write_board(rows, args, out, started)  # partial board after every entry
    board_dict, table = write_board(rows, args, out, started)
    print(table)
    log(f'written: {out}/leaderboard.md, leaderboard.json, leaderboard.png '
        f'({_fmt_s(time.time() - started)})')
    return board_dict


if __name__ == '__main__':
    main()
