"""tools/train.py, tools/test.py and resume, run as a user runs them, on the demo config.

Uses the RefineMask demo config on a subset of the small demo split (the first 8 train / 4 val
images, via ``dataset.indices``: 2 iterations per epoch at batch 4), so that CI stays short;
what is checked does not depend on the number of images. The 2-epoch run is interrupted
(killed) right after its first checkpoint and resumed with --resume: the schedule must go on
from where it stopped (epoch 2 trained, epoch 1 not trained again), not restart.
"""
import json
import os
import os.path as osp
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest

from insplug.checkpoints import safe_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/demo/refinemask_r18_shapes.py'
TRAIN_IMAGES, VAL_IMAGES = 8, 4  # subsets of the demo split (24 / 12 images)
ITERS_PER_EPOCH = 2  # 8 images, batch 4


def _data_options(data):
    root = data['root']
    opts = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                             'test_dataloader')
            for key in ('num_workers=0', 'persistent_workers=False',
                        f'dataset.data_root={root}')]
    opts += [f'train_dataloader.dataset.indices={TRAIN_IMAGES}'] + [
        f'{loader}.dataset.indices={VAL_IMAGES}' for loader in ('val_dataloader',
                                                               'test_dataloader')]
    opts += [f'val_evaluator.ann_file={root}val/annotations.json',
             f'test_evaluator.ann_file={root}val/annotations.json']
    return opts


def _run(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS='2')
    return subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, **kwargs)


@pytest.fixture(scope='module')
def interrupted_and_resumed(tmp_path_factory, demo_data):
    work_dir = str(tmp_path_factory.mktemp('work'))
    opts = ['--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
            'randomness.seed=0'] + _data_options(demo_data)
    cmd = [sys.executable, 'tools/train.py', DEMO, '--work-dir', work_dir] + opts
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    deadline = time.time() + 600
    # epoch_1.pth is renamed into place complete, then last_checkpoint is written the same way
    # (AtomicCheckpointHook): once last_checkpoint exists, epoch 1 is saved; kill at once, so
    # that epoch 2 is not finished
    while not osp.exists(osp.join(work_dir, 'last_checkpoint')) and first.poll() is None:
        assert time.time() < deadline, 'no checkpoint after 10 minutes'
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the interruption
    first_log = first.communicate()[0]
    assert first.returncode != 0, first_log[-3000:]
    assert osp.exists(osp.join(work_dir, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    resumed = _run(['tools/train.py', DEMO, '--work-dir', work_dir, '--resume'] + opts)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return dict(work_dir=work_dir, first_log=first_log, log=resumed.stdout + resumed.stderr)


def test_resume_continues_the_schedule(interrupted_and_resumed):
    log = interrupted_and_resumed['log']
    work_dir = interrupted_and_resumed['work_dir']
    assert re.search(rf'resumed epoch: 1, iter: {ITERS_PER_EPOCH}\b', log), log[-3000:]
    trained_epochs = {int(e) for e in re.findall(r'Epoch\(train\)\s+\[(\d+)\]', log)}
    assert trained_epochs == {2}, trained_epochs  # epoch 1 was not trained again
    final = safe_load(osp.join(work_dir, 'epoch_2.pth'))  # weights-only: no fallback needed
    assert final['meta']['epoch'] == 2 and final['meta']['iter'] == 2 * ITERS_PER_EPOCH
    assert 'optimizer' in final and 'param_schedulers' in final
    assert 'coco/segm_mAP' in log  # validation at the end of the schedule ran


def test_test_tool_reports_segm_metrics_and_dumps(interrupted_and_resumed, demo_data, tmp_path):
    ckpt = osp.join(interrupted_and_resumed['work_dir'], 'epoch_2.pth')
    out = tmp_path / 'results.pkl'
    result = _run(['tools/test.py', DEMO, ckpt, '--work-dir', str(tmp_path), '--out', str(out),
                   '--cfg-options'] + _data_options(demo_data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'coco/segm_mAP: [0-9.]+', result.stdout + result.stderr)
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == VAL_IMAGES and 'pred_instances' in predictions[0]


def test_format_only_writes_coco_result_json(interrupted_and_resumed, demo_data, tmp_path):
    ckpt = osp.join(interrupted_and_resumed['work_dir'], 'epoch_2.pth')
    prefix = str(tmp_path / 'test-dev')
    result = _run(['tools/test.py', DEMO, ckpt, '--work-dir', str(tmp_path), '--format-only',
                   prefix, '--cfg-options'] + _data_options(demo_data))
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in ('bbox', 'segm'):
        with open(f'{prefix}.{kind}.json') as f:
            detections = json.load(f)
        assert isinstance(detections, list)
        for det in detections[:5]:
            assert {'image_id', 'category_id', 'score'} <= set(det)
            assert ('segmentation' in det) == (kind == 'segm')


def test_make_demo_config_has_a_fixed_seed():
    """`make demo` must reproduce the README's figures: mmengine draws a random seed otherwise."""
    from mmengine.config import Config
    assert Config.fromfile(osp.join(REPO, DEMO)).randomness == dict(seed=0)
    with open(osp.join(REPO, 'Makefile')) as f:
        assert f'DEMO_CONFIG ?= {DEMO}' in f.read()
