"""Checkpoints never run code, and a checkpoint of another model is an error (issue 18, 1-2).

A crafted ``.pth`` whose pickle calls ``os.system`` must be refused, and its marker file must
never appear, through every path that reads a checkpoint: ``tools/test.py``, ``--resume``,
``load_from``, the converter, and :func:`insplug.checkpoints.safe_load`. Real mmengine
checkpoints (optimizer state, message hub) still load weights-only. ``tools/test.py`` with a
checkpoint that does not fit the config's model fails naming the keys and the likely origin.
"""
import builtins
import datetime
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

from insplug.checkpoints import (CheckpointMismatchError, UnsafeCheckpointError,
                                 check_state_dict_fit, safe_load)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/demo/refinemask_r18_shapes.py'
MASK_RCNN = 'configs/demo/mask_rcnn_r18_shapes.py'


class _RunsCommand:
    """Pickles as ``os.system(command)``: what a malicious checkpoint does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _WalksGetattr:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: an escape through an allowed getattr."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return builtins.getattr, (HistoryBuffer, '__init__')


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': _RunsCommand(f'touch {marker}')},
               path)
    return str(path), marker


def _run(args, **env):
    env = dict(os.environ, OMP_NUM_THREADS='1', **env)
    if 'INSPLUG_TRUST_CHECKPOINTS' not in env:
        os.environ.get('INSPLUG_TRUST_CHECKPOINTS') and env.pop('INSPLUG_TRUST_CHECKPOINTS')
    return subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                          text=True)


def test_safe_load_refuses_code_and_names_the_opt_in(evil, monkeypatch):
    monkeypatch.delenv('INSPLUG_TRUST_CHECKPOINTS', raising=False)
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    assert not marker.exists()
    message = str(info.value)
    assert path in message and 'posix.system' in message
    assert 'INSPLUG_TRUST_CHECKPOINTS=1' in message and '--unsafe-load' in message


def test_getattr_is_allowed_only_for_history_buffer_methods(tmp_path, monkeypatch):
    monkeypatch.delenv('INSPLUG_TRUST_CHECKPOINTS', raising=False)
    path = tmp_path / 'walk.pth'
    torch.save({'x': _WalksGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        safe_load(path)


def test_full_load_only_on_opt_in_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv('INSPLUG_TRUST_CHECKPOINTS', raising=False)
    path = tmp_path / 'dated.pth'
    torch.save({'state_dict': {}, 'date': datetime.date(2020, 1, 2)}, path)
    with pytest.raises(UnsafeCheckpointError, match='datetime.date'):
        safe_load(path)
    with pytest.warns(UserWarning, match='dated.pth.*FULL unpickle'):
        assert safe_load(path, trust=True)['date'] == datetime.date(2020, 1, 2)
    monkeypatch.setenv('INSPLUG_TRUST_CHECKPOINTS', '1')
    with pytest.warns(UserWarning, match='FULL unpickle'):
        assert safe_load(path)['date'].year == 2020


@pytest.mark.parametrize('route', ['test', 'resume', 'load_from', 'convert'])
def test_no_tool_runs_the_crafted_pickle(route, evil, demo_data):
    path, marker = evil
    root = demo_data['root']
    data = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                             'test_dataloader')
            for key in ('num_workers=0', 'persistent_workers=False', f'dataset.data_root={root}')]
    data += [f'{e}.ann_file={root}val/annotations.json' for e in ('val_evaluator',
                                                                  'test_evaluator')]
    work = ['--work-dir', str(marker.parent / 'work')]
    commands = {
        'test': ['tools/test.py', DEMO, path] + work + ['--cfg-options'] + data,
        'resume': ['tools/train.py', DEMO, '--resume', path] + work + ['--cfg-options'] + data,
        'load_from': ['tools/train.py', DEMO] + work + ['--cfg-options', f'load_from={path}']
        + data,
        'convert': ['tools/convert_checkpoint.py', 'spatialembeddings', path,
                    str(marker.parent / 'out.pth')],
    }
    result = _run(commands[route])
    assert result.returncode != 0
    assert not marker.exists(), f'{route}: the crafted pickle ran'
    assert 'refusing to load' in result.stderr, result.stderr[-2000:]


def _build(config):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope('insplug')
    return cfg, MODELS.build(cfg.model)


def test_real_mmengine_state_loads_weights_only(tmp_path):
    """The message hub (HistoryBuffer with its statistics methods) and numpy state survive."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / 'real.pth'
    torch.save({'meta': {'seed': np.int64(3), 'arr': np.arange(3.0), 'dtype': np.dtype('f4')},
                'message_hub': {'log_scalars': {'loss': buffer}},
                'state_dict': {'w': torch.ones(2)}}, path)
    loaded = safe_load(path)
    assert loaded['message_hub']['log_scalars']['loss'].mean() == 1.5
    assert loaded['meta']['seed'] == 3 and loaded['meta']['arr'].tolist() == [0.0, 1.0, 2.0]


def test_test_tool_refuses_a_checkpoint_of_another_model(tmp_path, demo_data):
    cfg, model = _build(MASK_RCNN)
    path = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.pretty_text}}, path)
    root = demo_data['root']
    result = _run(['tools/test.py', DEMO, str(path), '--work-dir', str(tmp_path / 'w'),
                   '--cfg-options', f'test_dataloader.dataset.data_root={root}',
                   'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
                   f'test_evaluator.ann_file={root}val/annotations.json'])
    assert result.returncode == 2, result.stderr[-2000:]
    err = result.stderr
    assert 'does not fit the model' in err and 'missing' in err and 'unexpected' in err
    assert "'MaskRCNN' model" in err and 'convert_checkpoint.py' in err
    assert 'roi_head.mask_head' in err  # the first few keys are named
    assert 'coco/segm_mAP' not in result.stdout + err  # nothing was evaluated


def test_fit_report_counts_missing_unexpected_and_mismatched():
    model = {'a.weight': torch.zeros(2, 3), 'b.weight': torch.zeros(4), 'bn.num_batches_tracked':
             torch.zeros(())}
    ckpt = {'module.a.weight': torch.zeros(3, 2), 'c.bias': torch.zeros(1)}
    fit = check_state_dict_fit(model, ckpt)
    assert fit.missing == ['b.weight'] and fit.unexpected == ['c.bias']
    assert fit.mismatched == [('a.weight', (3, 2), (2, 3))]
    assert not fit.ok and '1 missing' in fit.summary() and '1 with another shape' in fit.summary()
    assert check_state_dict_fit(model, {'a.weight': torch.ones(2, 3), 'b.weight': torch.ones(4)}).ok


def test_load_from_partial_only_when_explicit(tmp_path):
    """Strict ``load_from`` refuses a partial checkpoint; ``load_from_strict=False`` loads it."""
    from mmengine.config import Config

    from insplug.mmdet.runner import InsplugRunner
    cfg, model = _build(DEMO)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('roi_head')}
    path = tmp_path / 'backbone_only.pth'
    torch.save({'state_dict': state}, path)

    def runner(strict):
        c = Config.fromfile(osp.join(REPO, DEMO))
        c.work_dir = str(tmp_path / f'w{strict}')
        c.load_from = str(path)
        c.load_from_strict = strict
        runner = InsplugRunner.from_cfg(c)
        assert type(runner) is InsplugRunner  # a test once left Runner.from_cfg rebound
        return runner

    with pytest.raises(CheckpointMismatchError, match='missing'):
        runner(True).load_or_resume()
    partial = runner(False)
    partial.load_or_resume()  # loads, with a warning summarising what was not
    loaded = partial.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_detectron2_pkl_reader_takes_numpy_weights_and_refuses_code(tmp_path, monkeypatch):
    """detectron2's model-zoo ``.pkl`` files are plain pickles of numpy arrays."""
    import numpy as np

    from insplug.checkpoints import safe_pickle_load
    monkeypatch.delenv('INSPLUG_TRUST_CHECKPOINTS', raising=False)
    good = tmp_path / 'model_final.pkl'
    with open(good, 'wb') as f:
        pickle.dump({'model': {'conv.weight': np.ones((2, 3), np.float32)},
                     '__author__': 'Detectron2 Model Zoo'}, f)
    assert safe_pickle_load(good)['model']['conv.weight'].sum() == 6
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pkl'
    with open(evil, 'wb') as f:
        pickle.dump({'model': _RunsCommand(f'touch {marker}')}, f)
    with pytest.raises(UnsafeCheckpointError, match='refusing to load .*evil.pkl'):
        safe_pickle_load(evil)
    assert not marker.exists()
