"""Every configs/nuclei/*.py builds, trains 1 iteration on the real nuclei set and evaluates
(COCO segm) one val image: a smoke check of the leaderboard configs (the board itself, hours of
CPU, is run by tools/leaderboard.py, not by the tests). Skips where ../shared is absent."""
import glob
import os.path as osp
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from insplug.cli.leaderboard import point_at_data

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'nuclei', '*_nuclei.py')))


class IterTimer(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.times, self.losses = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.times.append(time.perf_counter() - self.start)
        self.losses.append(float(outputs['loss']))


def test_every_method_has_a_nuclei_config():
    names = {osp.basename(c).replace('_nuclei.py', '') for c in CONFIGS}
    assert names == {'mask_rcnn', 'refinemask', 'sparseinst', 'solov2', 'blendmask',
                     'centermask', 'embedmask', 'polarmask', 'yolact', 'spatialembeddings',
                     'discriminative'}


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.basename(c)[:-3] for c in CONFIGS])
def test_nuclei_config_trains_and_evaluates(config, nuclei_root, tmp_path):
    from insplug.cli.common import build_runner
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    assert cfg.leaderboard.method and cfg.leaderboard.family
    assert cfg.train_dataloader.dataset.type == 'NucleiDataset'
    assert cfg.val_evaluator.metric == ['segm']
    point_at_data(cfg, 'nuclei', nuclei_root, workers=0)
    cfg.work_dir = str(tmp_path)
    cfg.setdefault('runner_type', 'InsplugRunner')
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=0)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=10 ** 9)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 9, by_epoch=False)
    cfg.val_dataloader.dataset.indices = [0]
    init_default_scope('insplug')
    runner = build_runner(cfg)
    timer = IterTimer()
    runner.register_hook(timer)
    runner.train()
    with torch.no_grad():
        metrics = runner.val()
    assert len(timer.losses) == 1 and all(torch.isfinite(torch.tensor(timer.losses)))
    ap = metrics['coco/segm_mAP']
    assert -1 <= ap <= 1
    print(f'\n[nuclei] {osp.basename(config)}: {timer.times[-1]:.2f} s/iter (batch 2), '
          f'losses {timer.losses}')
