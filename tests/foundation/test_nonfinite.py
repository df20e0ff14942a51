"""A diverging run stops at its first non-finite loss with a message that says what to do.

* e2e: the stock Mask R-CNN demo config at lr 1e3 through ``tools/train.py``'s ``main``: it
  must stop (exit status 1) at the first iteration whose logged loss is non-finite, naming that
  iteration and the non-finite terms, the fixes (lr, clip_grad, --amp) and the last good
  checkpoint, which must exist and hold finite weights. Before NonFiniteLossHook the run went on
  to the end with NaN losses.
* unit: a non-finite gradient norm alone stops the run; a checkpoint whose weights are not
  finite is refused; AMP's intended inf gradient norms are not an error.
* every training config under configs/ has insplug's default hooks.
"""
import glob
import math
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner.checkpoint import _load_checkpoint

from insplug.cli.train import main as train_main
from insplug.mmdet.hooks.nonfinite import NonFiniteLossError, NonFiniteLossHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_HOOKS = ('NumClassCheckHook', 'NonFiniteLossHook', 'RNGStateHook', 'AtomicCheckpointHook')


@pytest.fixture(scope='module')
def diverging(tmp_path_factory):
    from insplug.datasets.shapes import generate
    root = str(tmp_path_factory.mktemp('shapes8')) + '/'
    generate(root, num_train=8, num_val=2, size=128, seed=0)
    cfg = tmp_path_factory.mktemp('cfg') / 'diverge.py'
    cfg.write_text(f"""
_base_ = {osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py')!r}
data_root = {root!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val/annotations.json')
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=12, val_interval=1000)
# without clip_grad the first non-finite value is a loss term (with clip_grad, as in the demo
# config, it is the gradient norm: test_nonfinite_grad_norm_alone_stops)
optim_wrapper = dict(optimizer=dict(lr=1e3), clip_grad=None)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
""")
    work_dir = tmp_path_factory.mktemp('work')
    return dict(config=str(cfg), work_dir=str(work_dir))


def test_lr_1e3_stops_at_the_first_nonfinite_loss(diverging, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main([diverging['config'], '--work-dir', diverging['work_dir']])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    match = re.search(r'at iteration (\d+): non-finite loss term\(s\): ([^;.]+)', message)
    assert match, message
    stop_iter = int(match.group(1))
    assert 1 < stop_iter < 12  # it stopped, and not before diverging
    bad_terms = dict(t.split('=') for t in match.group(2).split(', '))
    for term in ('lower the learning rate', 'lr 1000 in the config',
                 'clip gradients: optim_wrapper.clip_grad=dict(max_norm=35',
                 'without --amp', 'The last good checkpoint is kept: '):
        assert term in message, (term, message)
    # the logged losses agree: the iterations before are finite, the reported terms are not
    # the log file (mmengine's visualizer is a process-wide singleton, so scalars.json may be
    # elsewhere when several runners ran in this process; the text log is the run's own)
    logs = glob.glob(osp.join(diverging['work_dir'], '*', '*.log'))
    assert len(logs) == 1
    with open(logs[0]) as f:
        log = f.read()
    logged = re.findall(r'\(train\).*?  loss: (\S+)', log)
    assert len(logged) == stop_iter - 1  # every iteration before, not the failing one
    assert all(math.isfinite(float(v)) for v in logged), logged
    assert 'Training stopped at the first non-finite value' in log  # in the log file too
    assert all(not math.isfinite(float(v)) for v in bad_terms.values())
    # the kept checkpoint: the one of the iteration before, finite weights
    kept = re.search(r'The last good checkpoint is kept: (\S+) ', message).group(1)
    assert osp.basename(kept) == f'iter_{stop_iter - 1}.pth'
    ckpt = _load_checkpoint(kept, map_location='cpu')  # the project's (weights-only) loader
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    assert not osp.exists(osp.join(diverging['work_dir'], f'iter_{stop_iter}.pth'))


def _fake_runner(optim_wrapper, hub_name):
    hub = MessageHub.get_instance(hub_name)
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(lr=0.02))))
    return SimpleNamespace(
        iter=6, epoch=0, message_hub=hub, optim_wrapper=optim_wrapper, cfg=cfg,
        train_loop=SimpleNamespace(max_epochs=3),
        logger=SimpleNamespace(error=lambda msg: None))


def _sgd():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.02)
    return OptimWrapper(optimizer=optimizer, clip_grad=dict(max_norm=35, norm_type=2))


def test_nonfinite_grad_norm_alone_stops(tmp_path):
    runner = _fake_runner(_sgd(), 'nonfinite_grad')
    runner.message_hub.update_scalar('train/grad_norm', float('inf'))
    hook = NonFiniteLossHook()
    outputs = dict(loss=torch.tensor(1.5), loss_cls=torch.tensor(0.5), acc=torch.tensor(50.))
    with pytest.raises(NonFiniteLossError) as info:
        hook.after_train_iter(runner, batch_idx=2, outputs=outputs)
    text = str(info.value)
    assert 'iteration 7 (epoch 1, batch 3 of the epoch)' in text
    assert 'gradient norm=inf' in text and 'non-finite loss' not in text
    assert 'loss terms (all finite): loss=1.5, loss_cls=0.5' in text
    assert 'lower optim_wrapper.clip_grad' in text  # clip_grad is on: advice adapts
    assert 'No checkpoint was written' in text
    runner.message_hub.update_scalar('train/grad_norm', 3.0)
    hook.after_train_iter(runner, batch_idx=3, outputs=outputs)  # finite: no error


def test_amp_inf_grad_norm_is_not_an_error():
    """AMP's dynamic loss scale makes inf gradient norms on purpose (the step is skipped)."""
    # AmpOptimWrapper's constructor asserts a GPU; the hook only looks at the wrapper's type
    amp = object.__new__(AmpOptimWrapper)
    runner = _fake_runner(amp, 'nonfinite_amp')
    runner.message_hub.update_scalar('train/grad_norm', float('inf'))
    NonFiniteLossHook().after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.0)))
    amp.optimizer = _sgd().optimizer  # what the advice text reads
    with pytest.raises(NonFiniteLossError, match='AmpOptimWrapper is on: fp16 may overflow'):
        # a non-finite loss still stops an AMP run (1e39 is inf in float32)
        NonFiniteLossHook().after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1e39)))


def test_checkpoint_with_nonfinite_weights_is_refused():
    runner = _fake_runner(_sgd(), 'nonfinite_save')
    checkpoint = dict(state_dict={'a.weight': torch.tensor([1.0, float('nan')]),
                                  'a.num_batches': torch.tensor(3)})
    with pytest.raises(NonFiniteLossError, match=r'a\.weight.*NOT written'):
        NonFiniteLossHook().before_save_checkpoint(runner, checkpoint)
    NonFiniteLossHook().before_save_checkpoint(
        runner, dict(state_dict={'a.weight': torch.ones(2)}))


def _training_configs():
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, REPO)
        if rel.startswith(('configs/_base_', 'configs/detectron2')):
            continue
        with open(path) as f:
            text = f.read()
        # complete configs, not model fragments (which neither inherit nor define data)
        if re.search(r'^_base_\s*=', text, re.M) or 'train_dataloader' in text:
            yield rel


@pytest.mark.parametrize('config', list(_training_configs()))
def test_every_config_has_insplugs_default_hooks(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    assert 'train_dataloader' in cfg, config
    assert cfg.default_scope == 'insplug', config
    types = [h['type'] for h in cfg.get('custom_hooks', [])]
    missing = [t for t in DEFAULT_HOOKS if t not in types]
    assert not missing, f'{config}: custom_hooks {types} lacks {missing}'
