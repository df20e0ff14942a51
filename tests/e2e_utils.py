"""End-to-end helpers: train a config for a few iterations in-process and evaluate it.

``train_and_evaluate`` loads a real config file, points its data at a (small) COCO-format set,
replaces the schedule by ``max_iters`` iterations at constant LR after a short warm-up, records
every iteration's total loss, and returns the losses and the COCO metrics of the final model.
"""
import copy
import json
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner


class LossRecorder(Hook):
    """Keeps the total loss of every training iteration."""
    priority = 'VERY_LOW'

    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs['loss']))


def point_config_at_data(cfg, data_root, train_ann, val_ann, train_img='train/images/',
                         val_img='val/images/', batch_size=None):
    """Rewrite the dataloaders and evaluators of ``cfg`` in place to read ``data_root``."""
    for key, ann, img in (('train_dataloader', train_ann, train_img),
                          ('val_dataloader', val_ann, val_img),
                          ('test_dataloader', val_ann, val_img)):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        if batch_size is not None:
            loader.batch_size = batch_size
        dataset = loader.dataset
        while 'dataset' in dataset:  # wrappers such as RepeatDataset
            dataset = dataset.dataset
        dataset.data_root = data_root
        dataset.ann_file = ann
        dataset.data_prefix = dict(img=img)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = data_root + val_ann
    return cfg


def train_and_evaluate(config, data, work_dir, max_iters, lr=None, warmup_iters=5,
                       evaluate_on='val', batch_size=2, cfg_options=None, seed=0, hooks=()):
    """Train ``config`` for ``max_iters`` iterations on ``data`` and evaluate.

    Args:
        config: path of a config file.
        data: dict from the ``demo_data`` fixture (``root``, ``train_ann``, ``val_ann``).
        work_dir: where checkpoints and logs go.
        max_iters: training iterations.
        lr: optional base learning rate overriding the config's.
        evaluate_on: 'val', or 'train' to measure fitting on the training images.
        cfg_options: dict merged into the config last.
        hooks: more hook objects to register on the runner.

    Returns:
        dict with ``losses`` (list of floats, one per iteration) and ``metrics`` (dict).
    """
    cfg = Config.fromfile(config)
    eval_ann = data['train_ann'] if evaluate_on == 'train' else data['val_ann']
    eval_img = 'train/images/' if evaluate_on == 'train' else 'val/images/'
    point_config_at_data(cfg, data['root'], data['train_ann'], eval_ann,
                         val_img=eval_img, batch_size=batch_size)
    cfg.work_dir = str(work_dir)
    # an infinite sampler: mmengine's iteration loop sleeps 2 s at every epoch end otherwise
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 ** 9)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=warmup_iters)]
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = lr
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=max_iters,
                                        by_epoch=False)
    cfg.randomness = dict(seed=seed)
    cfg.launcher = 'none'
    if cfg_options:
        cfg.merge_from_dict(copy.deepcopy(cfg_options))
    runner = Runner.from_cfg(cfg)
    recorder = LossRecorder()
    runner.register_hook(recorder)
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    with torch.no_grad():
        metrics = runner.val()
    return dict(losses=recorder.losses, metrics=metrics, runner=runner)


def mean(values):
    return sum(values) / max(len(values), 1)


def fit_subset_options(config, data, work_dir, num_images=4, size=160):
    """``train_and_evaluate`` arguments that train and evaluate on the first ``num_images``
    training images at ``size`` px without flips (annotation subset written to ``work_dir``).

    Returns:
        (data dict for ``train_and_evaluate``, its ``cfg_options``).
    """
    with open(data['root'] + data['train_ann']) as f:
        coco = json.load(f)
    keep = sorted(im['id'] for im in coco['images'])[:num_images]
    coco['images'] = [im for im in coco['images'] if im['id'] in keep]
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in keep]
    ann = osp.join(str(work_dir), f'train_first{num_images}.json')
    with open(ann, 'w') as f:
        json.dump(coco, f)
    cfg = Config.fromfile(config)
    pipelines = {}
    for key in ('train_dataloader', 'val_dataloader'):
        steps = [dict(p) for p in cfg[key].dataset.pipeline if p['type'] != 'RandomFlip']
        for p in steps:
            if p['type'] == 'Resize':
                p['scale'] = (size, size)
        pipelines[f'{key}.dataset.pipeline'] = steps
    subset = dict(data, train_ann=ann)  # absolute path: the dataset's join keeps it
    # an infinite sampler: mmengine's iteration loop sleeps 2 s at every epoch end (an epoch is
    # a single batch here)
    return subset, dict(pipelines, **{'val_evaluator.ann_file': ann,
                                      'train_dataloader.sampler.type': 'InfiniteSampler'})
