"""Size a leaderboard entry's schedule: CPU seconds per training iteration, measured.

    python tools/leaderboard.py CONFIGS... --data nuclei --threads 1 --measure 6 [--size-cpu-min 30]

For each config, train ``warm-up + N`` iterations on the board's data (the config's own model,
pipeline and batch; no checkpoint, no validation) and report the mean CPU seconds of the last N,
measured from one iteration's end to the next, so data loading (``--workers 0``) is included.
The iterations that fit ``--size-cpu-min`` CPU-minutes are printed next to the config's own
``max_iters``: the nuclei configs are sized this way (see their headers). CPU time is the
process's (``time.process_time``), so a machine shared with other work does not inflate it.
"""
import statistics
import time

from mmengine.hooks import Hook

WARMUP_ITERS = 3  # first iterations: allocator and autotuning warm-up, not timed


class _Enough(Exception):
    """Raised by the timer once it has its iterations: ends ``runner.train()`` early."""


class IterationCPUTimer(Hook):
    """CPU seconds between the ends of consecutive training iterations (data loading included)."""
    priority = 'VERY_LOW'

    def __init__(self, num_iters):
        self.num_iters = num_iters
        self.times = []
        self.last = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        now = time.process_time()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now
        if len(self.times) >= WARMUP_ITERS - 1 + self.num_iters:
            raise _Enough()

    def per_iteration(self):
        """Mean CPU seconds of the timed iterations (the warm-up ones dropped)."""
        return statistics.mean(self.times[WARMUP_ITERS - 1:])


def measure_config(cfg, num_iters, build_runner):
    """Train ``cfg`` (already pointed at the data) just long enough to time ``num_iters``.

    Returns:
        dict: ``cpu_s_per_iter`` (mean of the timed iterations) and ``samples`` (each
        iteration's CPU seconds, warm-up included), and the config's own ``max_iters``.
    """
    config_iters = cfg.train_cfg.get('max_iters')
    cfg.train_cfg.max_iters = max(config_iters or 0, WARMUP_ITERS + num_iters + 1)
    cfg.train_cfg.val_interval = 10 ** 9
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 9)
    runner = build_runner(cfg)
    timer = IterationCPUTimer(num_iters)
    runner.register_hook(timer)
    try:
        runner.train()
    except _Enough:
        pass
    else:
        raise RuntimeError(f'{cfg.filename}: training ended before {num_iters} timed '
                           'iterations (an epoch-based schedule shorter than that?)')
    return dict(cpu_s_per_iter=timer.per_iteration(), samples=timer.times,
                config_max_iters=config_iters)


def iterations_for(cpu_minutes, cpu_s_per_iter, multiple=10):
    """Iterations that fit ``cpu_minutes``, rounded to ``multiple`` (at least one ``multiple``)."""
    return max(multiple, int(round(cpu_minutes * 60 / cpu_s_per_iter / multiple)) * multiple)
