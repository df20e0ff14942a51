"""Distributed training and testing on CPU with 2 gloo processes (issue 18, item 6).

mmengine alone fails here (``torch.cuda.set_device``, DDP with ``device_ids=[0]`` on a CPU
module); :class:`insplug.mmdet.runner.InsplugRunner` picks gloo and ``device_ids=None``. Checked:

* the DDP gradient of a real model is the average of the two ranks' single-process gradients
  (what data-parallel SGD must compute);
* ``tools/dist_train.sh`` trains a demo config for a few iterations;
* ``tools/dist_test.sh`` gathers the predictions of both ranks: the same predictions for every
  validation image, and the same COCO AP, as a single-process ``tools/test.py``.

To keep CI short, the runs use the first 8 train / 4 val images of the demo split
(``dataset.indices``): 2 iterations per epoch, 2 val images per rank.
"""
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from insplug.checkpoints import safe_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/mask_rcnn_r18_shapes.py'
TRAIN_IMAGES, VAL_IMAGES = 8, 4  # subsets of the demo split (24 / 12 images)


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def _data_options(root):
    opts = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                             'test_dataloader')
            for key in ('num_workers=0', 'persistent_workers=False', f'dataset.data_root={root}')]
    opts += [f'train_dataloader.dataset.indices={TRAIN_IMAGES}'] + [
        f'{loader}.dataset.indices={VAL_IMAGES}' for loader in ('val_dataloader',
                                                               'test_dataloader')]
    return opts + [f'{e}.ann_file={root}val/annotations.json'
                   for e in ('val_evaluator', 'test_evaluator')]


def _torchrun(args, port):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                           '--master_port', str(port)] + args, cwd=REPO, env=_env(),
                          capture_output=True, text=True)


def test_ddp_gradient_is_the_average_of_the_ranks(demo_data, tmp_path):
    out = str(tmp_path / 'grads.pt')
    result = _torchrun(['tests/foundation/dist_grad_worker.py', CONFIG, demo_data['root'], out],
                       port=29611)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = safe_load(out)
    assert saved['backend'] == 'gloo'
    synced, (g0, g1) = saved['synced'], saved['per_image']
    assert len(synced) > 50 and synced.keys() == g0.keys() == g1.keys()
    differs = 0
    for name, grad in synced.items():
        torch.testing.assert_close(grad, (g0[name] + g1[name]) / 2, rtol=1e-4, atol=1e-6,
                                   msg=name)
        differs += not torch.allclose(g0[name], g1[name])
    assert differs > 50  # the two images really gave different gradients


@pytest.fixture(scope='module')
def dist_trained(demo_data, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('dist_train'))
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work, '--cfg-options']
        + _data_options(demo_data['root'])
        + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=100',
           'train_dataloader.batch_size=2'],
        cwd=REPO, env=dict(_env(), PORT='29612'), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(work=work, log=result.stdout + result.stderr)


def test_dist_train_runs_with_gloo(dist_trained):
    # 8 images, 2 ranks x batch 2: 2 iterations per epoch
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', dist_trained['log'])
    assert osp.isfile(osp.join(dist_trained['work'], 'epoch_1.pth'))


def _segm_ap(log):
    return re.search(r'coco/segm_mAP: ([0-9.]+)', log).group(1)


def test_dist_test_gathers_both_ranks(dist_trained, demo_data, tmp_path):
    ckpt = osp.join(dist_trained['work'], 'epoch_1.pth')
    # every box is kept, so the predictions are many and their comparison means something
    opts = _data_options(demo_data['root']) + ['model.test_cfg.rcnn.score_thr=0.0']
    single_out, dist_out = str(tmp_path / 'single.pkl'), str(tmp_path / 'dist.pkl')
    single = subprocess.run([sys.executable, 'tools/test.py', CONFIG, ckpt, '--work-dir',
                             str(tmp_path / 's'), '--out', single_out, '--cfg-options'] + opts,
                            cwd=REPO, env=_env(), capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    dist = subprocess.run(['bash', 'tools/dist_test.sh', CONFIG, ckpt, '2', '--work-dir',
                           str(tmp_path / 'd'), '--out', dist_out, '--cfg-options'] + opts,
                          cwd=REPO, env=dict(_env(), PORT='29613'), capture_output=True,
                          text=True)
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert _segm_ap(single.stdout + single.stderr) == _segm_ap(dist.stdout + dist.stderr)
    with open(single_out, 'rb') as f:
        a = {r['img_id']: r['pred_instances'] for r in pickle.load(f)}
    with open(dist_out, 'rb') as f:
        b = {r['img_id']: r['pred_instances'] for r in pickle.load(f)}
    assert len(a) == VAL_IMAGES and a.keys() == b.keys()
    assert sum(len(p['scores']) for p in a.values()) > 100
    for img_id in a:
        np.testing.assert_allclose(np.asarray(a[img_id]['bboxes']),
                                   np.asarray(b[img_id]['bboxes']), rtol=1e-5, atol=1e-3)
