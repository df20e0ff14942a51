"""Checkpoints written atomically: a kill while saving never leaves a truncated or missing latest.

mmengine writes ``epoch_N.pth`` in place (open, write) and the ``last_checkpoint`` pointer the
same way, and with ``max_keep_ckpts`` it deletes the outdated checkpoints BEFORE writing the new
one. A run killed while saving could therefore leave a truncated ``epoch_N.pth`` (the newest
file by name), an empty ``last_checkpoint``, or, with ``max_keep_ckpts=1``, no loadable
checkpoint at all.

:class:`AtomicCheckpointHook` (a plain hook in ``custom_hooks``, so it works whatever
``default_hooks.checkpoint`` says) changes, for local directories, at ``before_run``:

* ``runner.save_checkpoint``: the file is written as ``NAME.tmp-PID`` in the same directory,
  flushed to disk, then renamed over ``NAME`` with ``os.replace`` (atomic on POSIX and Windows);
* every ``CheckpointHook`` (mmengine's class, not a subclass that overrides the save step): the
  new checkpoint is written first, then ``last_checkpoint`` (atomically, the same way), and only
  then are the outdated checkpoints deleted.

Leftover ``*.tmp-PID`` files of a killed save are removed at the next run's start (logged).
Remote backends (``backend_args`` naming another storage) are left to mmengine.
"""
import os
import os.path as osp
import re
import types

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from insplug.registry import HOOKS

_TMP = re.compile(r'.+\.tmp-(\d+)$')


def _alive(pid):
    """Whether another process with this id runs (its save may be in progress)."""
    if pid == os.getpid():
        return False
    if os.name == 'nt':  # os.kill(pid, 0) would end the process there: keep the file
        return True
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _tmp_name(name):
    return f'{name}.tmp-{os.getpid()}'


def atomic_write(path, data):
    """Write ``data`` (bytes or str) to ``path`` through a temporary file and ``os.replace``."""
    tmp = _tmp_name(path)
    with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _is_local(out_dir, file_client_args=None, backend_args=None):
    if file_client_args is not None:
        return False
    try:
        return isinstance(get_file_backend(out_dir, backend_args=backend_args), LocalBackend)
    except Exception:  # an unknown scheme: not ours to change
        return False


def _atomic_runner_save(original):
    """``Runner.save_checkpoint`` writing to a temporary name, then renaming into place."""

    def save_checkpoint(out_dir, filename, file_client_args=None, *args, **kwargs):
        if not _is_local(out_dir, file_client_args, kwargs.get('backend_args')):
            return original(out_dir, filename, file_client_args, *args, **kwargs)
        tmp = _tmp_name(filename)
        original(out_dir, tmp, file_client_args, *args, **kwargs)
        if is_main_process():  # save_checkpoint writes on the main process only
            tmp_path = osp.join(out_dir, tmp)
            with open(tmp_path, 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, osp.join(out_dir, filename))

    save_checkpoint.insplug_atomic = True
    return save_checkpoint


def _save_checkpoint_with_step(self, runner, step, meta):
    """mmengine 0.10's ``CheckpointHook._save_checkpoint_with_step``, reordered: save the new
    checkpoint, then point ``last_checkpoint`` at it (atomically), then delete old ones."""
    outdated = []
    if self.max_keep_ckpts > 0:
        # _save_checkpoint and _save_best_checkpoint may call this for the same step
        if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    runner.save_checkpoint(
        self.out_dir, ckpt_filename, self.file_client_args,
        save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
        meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
    if not is_main_process():
        return
    atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
    for old_step in outdated:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)


@HOOKS.register_module()
class AtomicCheckpointHook(Hook):
    """Make the run's checkpoint files and ``last_checkpoint`` atomic (module docstring)."""

    priority = 'VERY_HIGH'

    def before_run(self, runner):
        if not getattr(runner.save_checkpoint, 'insplug_atomic', False):
            runner.save_checkpoint = _atomic_runner_save(runner.save_checkpoint)
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook):
                continue
            if type(hook)._save_checkpoint_with_step is not \
                    CheckpointHook._save_checkpoint_with_step:
                print_log(f'AtomicCheckpointHook: {type(hook).__name__} overrides the save '
                          'step; its `last_checkpoint` file and deletions stay as they are.',
                          logger='current', level=30)
                continue
            hook._save_checkpoint_with_step = types.MethodType(_save_checkpoint_with_step, hook)
        self._remove_leftovers(runner)

    @staticmethod
    def _remove_leftovers(runner):
        if not is_main_process():
            return
        dirs = {runner.work_dir}
        dirs.update(h.out_dir for h in runner.hooks
                    if isinstance(h, CheckpointHook) and isinstance(h.out_dir, str))
        for folder in dirs:
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                match = _TMP.match(name)
                if match is None or _alive(int(match.group(1))):
                    continue
                os.remove(osp.join(folder, name))
                print_log(f'AtomicCheckpointHook: removed {osp.join(folder, name)}, left by a '
                          'save that was interrupted.', logger='current', level=30)
