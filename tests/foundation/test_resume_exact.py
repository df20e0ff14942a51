"""Resume is exact: 1 epoch then ``--resume`` to 2 gives bit-identical epoch-2 losses and weights.

On CPU, with ``randomness=dict(seed=0, deterministic=True)``, 4 training images (2 iterations per
epoch) and one thread, the stock Mask R-CNN demo config (random flips: numpy; RPN/RoI samplers:
torch) at narrower widths (32-channel FPN and heads, 64 sampled RoIs: CI time) is trained

* A: 2 epochs without interruption;
* B: 1 epoch, then ``tools/train.py --resume`` (the same ``insplug.cli.train.main``) to 2.

Every loss term of every epoch-2 iteration (the values the LoggerHook logs, read from the
message hub at full precision) and the final weights must be bit-identical. Before
``RNGStateHook`` the resumed epoch 2 started from freshly seeded RNGs and differed.
Also checks that the checkpoints hold the RNG states as plain lists/tensors that a
weights-only ``torch.load`` accepts, and that no temporary file of the atomic save remains.
"""
import os
import os.path as osp

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

from insplug.cli.train import main as train_main

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOSS_KEYS = ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask')


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    from insplug.datasets.shapes import generate
    root = str(tmp_path_factory.mktemp('shapes4')) + '/'
    generate(root, num_train=4, num_val=2, size=128, seed=0)
    cfg = tmp_path_factory.mktemp('cfg') / 'resume_exact.py'
    cfg.write_text(f"""
_base_ = {osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py')!r}
data_root = {root!r}
size = (128, 128)
width = 32  # narrower than the demo (128): the check is about RNG state, not accuracy
model = dict(
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val/annotations.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, deterministic=True)
""")
    return str(cfg)


def _train(argv):
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        return train_main(argv)
    finally:  # randomness.deterministic switches this on for the whole process
        torch.use_deterministic_algorithms(previous)


def _history(runner):
    hub = runner.message_hub
    return {key: [float(v) for v in hub.get_scalar(f'train/{key}').data[0]]
            for key in LOSS_KEYS}


@pytest.fixture(scope='module')
def runs(tiny_config, tmp_path_factory):
    straight_dir = str(tmp_path_factory.mktemp('straight'))
    straight = _train([tiny_config, '--work-dir', straight_dir])
    resumed_dir = str(tmp_path_factory.mktemp('resumed'))
    first = _train([tiny_config, '--work-dir', resumed_dir,
                    '--cfg-options', 'train_cfg.max_epochs=1'])
    assert first.epoch == 1 and not osp.exists(osp.join(resumed_dir, 'epoch_2.pth'))
    resumed = _train([tiny_config, '--work-dir', resumed_dir, '--resume'])
    return dict(straight=straight, first=first, resumed=resumed, straight_dir=straight_dir,
                resumed_dir=resumed_dir)


def test_epoch2_losses_and_weights_are_bit_identical(runs):
    straight, resumed = runs['straight'], runs['resumed']
    iters = len(straight.train_dataloader)
    assert straight.iter == resumed.iter == 2 * iters
    a, b = _history(straight), _history(resumed)
    first = _history(runs['first'])
    for key in LOSS_KEYS:
        assert len(a[key]) == 2 * iters, key
        assert first[key] == a[key][:iters], key  # epoch 1 is the same run
        # the resumed message hub holds epoch 1 (restored) then epoch 2 (trained)
        assert b[key][-iters:] == a[key][-iters:], (key, a[key][-iters:], b[key][-iters:])
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_rng_state_loads_weights_only(runs, tmp_path):
    # the project's checkpoint loader (weights-only with mmengine's allow-list)
    ckpt = _load_checkpoint(osp.join(runs['resumed_dir'], 'epoch_1.pth'), map_location='cpu')
    # the RNG state itself needs no allow-list entry at all
    torch.save(ckpt['rng_state'], tmp_path / 'rng.pt')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / 'rng.pt') == []
    rng = torch.load(tmp_path / 'rng.pt', weights_only=True)
    assert set(rng) >= {'python', 'numpy', 'torch'}
    assert isinstance(rng['torch'], torch.Tensor) and rng['torch'].dtype == torch.uint8
    assert isinstance(rng['numpy']['keys'], torch.Tensor)
    assert isinstance(rng['python']['state'], list)
    leftovers = [f for d in (runs['resumed_dir'], runs['straight_dir'])
                 for f in os.listdir(d) if 'tmp' in f]
    assert not leftovers, leftovers


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not an Exception, so nothing catches it)."""


def test_kill_while_saving_keeps_the_latest_checkpoint(tiny_config, tmp_path, monkeypatch):
    """Checkpoint 2 is cut off half-way through its bytes (max_keep_ckpts=1). mmengine alone
    deleted epoch_1.pth first and left a truncated epoch_2.pth, with last_checkpoint naming
    the deleted file. Now: epoch_1.pth and last_checkpoint intact, no epoch_2.pth, and
    --resume cleans the leftover and finishes."""
    from mmengine.fileio import LocalBackend
    work_dir = str(tmp_path / 'work')
    put = LocalBackend.put
    saves = []

    def dying_put(self, obj, filepath):
        if 'epoch_' in str(filepath):
            saves.append(str(filepath))
            if len(saves) == 2:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise _Killed()
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', dying_put)
    options = ['--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1']
    with pytest.raises(_Killed):
        _train([tiny_config, '--work-dir', work_dir] + options)
    monkeypatch.setattr(LocalBackend, 'put', put)
    assert len(saves) == 2
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        latest = f.read().strip()
    assert osp.basename(latest) == 'epoch_1.pth'
    assert _load_checkpoint(latest, map_location='cpu')['meta']['epoch'] == 1
    assert any('.tmp-' in name for name in os.listdir(work_dir))  # the cut-off write
    runner = _train([tiny_config, '--work-dir', work_dir, '--resume'] + options)
    assert runner.epoch == 2
    assert sorted(n for n in os.listdir(work_dir) if '.pth' in n) == ['epoch_2.pth']


def test_iteration_based_resume_is_exact(tiny_config, tmp_path):
    """IterBasedTrainLoop + InfiniteSampler: mmengine replays the trained batches through the
    data pipeline on resume (drawing random numbers); the RNG state comes back after that."""
    cfg = tmp_path / 'iter_based.py'
    cfg.write_text(f"""_base_ = {tiny_config!r}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
train_dataloader = dict(sampler=dict(type='InfiniteSampler'))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2))
""")
    straight = _train([str(cfg), '--work-dir', str(tmp_path / 'a')])
    _train([str(cfg), '--work-dir', str(tmp_path / 'b'), '--cfg-options',
            'train_cfg.max_iters=2'])
    resumed = _train([str(cfg), '--work-dir', str(tmp_path / 'b'), '--resume'])
    a, b = _history(straight), _history(resumed)
    for key in LOSS_KEYS:
        assert len(a[key]) == len(b[key]) == 4, key
        assert a[key] == b[key], (key, a[key], b[key])
