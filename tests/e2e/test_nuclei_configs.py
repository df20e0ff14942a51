"""Every configs/nuclei/*.py builds and trains on the real nuclei set: a smoke check of the
leaderboard configs (the board itself, hours of CPU, is run by tools/leaderboard.py, not by the
tests). Skips where ../shared is absent.

* The first eleven configs (``FULL_CHECK``) train 1 iteration at their own 512 px input through
  insplug's runner and evaluate (COCO segm) one val image.
* The configs added for the rest of the component table (``REDUCED_CHECK``) are checked at a
  reduced input (128 px, CI time: a full-size iteration of these costs 2-15 s each on one
  thread): each builds from its file, every ``num_classes`` in the model is the set's one
  class, it trains 1 iteration (batch of one real training image, through its own optimizer
  wrapper) with finite losses, and predicts one real val image with masks at the original
  image size. Input-size-bound settings are scaled with the input (a fixed pad / network input
  size, RIS's ConvLSTM grid), and the prediction keeps at most 50 detections / proposals and
  200 candidates (a random-init model keeps as many as it may, and the two-stage models'
  1000 proposals x 400 detections cost 5-12 s per image).
* Methods of the component table without a nuclei config are listed, with the reason, in
  docs/leaderboard.md ("Methods without a nuclei row"); the test checks that list.
"""
import copy
import glob
import os.path as osp
import re
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from insplug.cli.leaderboard import point_at_data

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'nuclei', '*_nuclei.py')))
FULL_CHECK = ['mask_rcnn', 'refinemask', 'sparseinst', 'solov2', 'blendmask', 'centermask',
              'embedmask', 'polarmask', 'yolact', 'spatialembeddings', 'discriminative']
REDUCED_CHECK = ['solo', 'point_rend', 'deepmask', 'sharpmask', 'instancefcn', 'fcis', 'd2det',
                 'rsis', 'ris', 'recurrent_attention', 'recurrent_embedding', 'metric_seediness']
# BoxCaseg's two board entries: the segmenter (a step) and the Mask R-CNN on its pseudo masks
BOXCASEG = ['boxcaseg_segmenter', 'boxcaseg']
# methods of the README component table with no nuclei config (reasons in docs/leaderboard.md)
WITHOUT_ROW = ['PRM', 'CountSeg', 'ZSI']
REDUCED_SIZE = 128
REDUCED_KEEP = {'max_per_img': 50, 'num_proposals': 50, 'max_seeds': 50, 'nms_pre': 200,
                'pre_nms': 200}


def _path(name):
    return osp.join(REPO, 'configs', 'nuclei', f'{name}_nuclei.py')


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
    assert names == set(FULL_CHECK) | set(REDUCED_CHECK) | set(BOXCASEG)
    assert not set(FULL_CHECK) & set(REDUCED_CHECK)


def test_methods_without_a_row_are_documented():
    with open(osp.join(REPO, 'docs', 'leaderboard.md')) as f:
        doc = f.read()
    section = doc.split('## Methods without a nuclei row', 1)
    assert len(section) == 2, 'docs/leaderboard.md lacks its "Methods without a nuclei row"'
    listed = re.findall(r'^- \*\*([^*]+)\*\*', section[1].split('\n## ', 1)[0], re.M)
    assert listed == WITHOUT_ROW
    for name in REDUCED_CHECK + FULL_CHECK:  # a method with a row is not also listed
        assert f'**{name}**' not in section[1]


def test_chained_entry_starts_from_its_parent():
    """SharpMask's row trains its refinement on the DeepMask row's final checkpoint."""
    cfg = Config.fromfile(_path('sharpmask'))
    assert cfg.leaderboard.init_from == 'deepmask_nuclei' and cfg.load_from_strict is False
    assert cfg.model.train_cfg.stage == 'sharpmask'
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('insplug')
    child = MODELS.build(cfg.model).state_dict()
    parent = MODELS.build(Config.fromfile(_path('deepmask')).model).state_dict()
    # every DeepMask tensor fits; only the refinement is new
    assert all(child[k].shape == v.shape for k, v in parent.items())
    new = {k.split('.')[1] for k in set(child) - set(parent)}
    assert new == {'refine'}, new


def test_boxcaseg_steps_on_nuclei(nuclei_root, tmp_path, monkeypatch):
    """BoxCaseg's row is the baseline Mask R-CNN on pseudo masks; its segmenter step trains on
    nuclei boxes (masks never loaded) plus salient crops of a generated shapes set."""
    from insplug.cli import board_steps
    from insplug.cli.common import build_runner
    from mmengine.registry import init_default_scope
    row, baseline = Config.fromfile(_path('boxcaseg')), Config.fromfile(_path('mask_rcnn'))
    assert row.leaderboard.pseudo_masks_from == 'boxcaseg_segmenter_nuclei'
    assert row.model == baseline.model and row.optim_wrapper == baseline.optim_wrapper
    assert row.train_cfg == baseline.train_cfg
    assert row.train_dataloader.dataset.ann_file == 'train/pseudo.json'

    cfg = Config.fromfile(_path('boxcaseg_segmenter'))
    assert cfg.leaderboard.step_of == 'boxcaseg_nuclei' and cfg.leaderboard.salient == 'shapes'
    boxes = cfg.train_dataloader.dataset.dataset
    assert boxes.type == 'NucleiDataset' and any(t['type'] == 'BoxesOnly' for t in boxes.pipeline)
    assert [t for t in boxes.pipeline if t['type'] == 'LoadAnnotations'][0]['with_mask'] is False
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters >= 100
    point_at_data(cfg, 'nuclei', nuclei_root, workers=0)
    monkeypatch.setattr(board_steps, 'SALIENT_SOURCE_IMAGES', 4)
    board_steps.point_salient_at_shapes(cfg.train_dataloader.dataset.salient, str(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 1, 10  # one iteration, no val pass
    cfg.default_hooks.checkpoint.interval = 10
    init_default_scope('insplug')
    runner = build_runner(cfg)
    losses = []

    class Losses(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append({k: float(v) for k, v in outputs.items()})
    runner.register_hook(Losses())
    runner.train()
    assert len(losses) == 1 and all(torch.isfinite(torch.tensor(v)) for v in losses[0].values())
    assert {'loss_mil', 'loss_salient'} <= set(losses[0]), losses[0]


@pytest.mark.parametrize('config', [_path(n) for n in FULL_CHECK], ids=FULL_CHECK)
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


def _reduce(cfg, size):
    """Scale the input (and the settings bound to it) of a nuclei config to ``size`` px."""
    full = None
    for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.val_dataloader.dataset.pipeline):
        for step in pipeline:
            if step['type'] == 'Resize':
                full = step['scale'][0]
                step['scale'] = (size, size)
    model = cfg.model
    if model.data_preprocessor.get('pad_size_divisor') == full:  # a fixed padded input
        model.data_preprocessor.pad_size_divisor = size
    head = model.get('head', {})
    if 'feat_size' in head:  # RIS: the ConvLSTM grid of the fixed input
        head.feat_size = tuple(s * size // full for s in head.feat_size)
    net = model.get('net', {})
    if 'input_size' in net:  # recurrent attention: the fixed network input
        net.input_size = (size, size)
    _cap_kept(model)
    return cfg


def _cap_kept(node):
    """Cap kept detections / proposals / candidates anywhere in the model config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in REDUCED_KEEP and isinstance(value, int):
                node[key] = min(value, REDUCED_KEEP[key])
            else:
                _cap_kept(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _cap_kept(value)


@pytest.fixture(scope='module')
def reduced_batches(nuclei_root):
    """One real training and one val image at the reduced size (the nuclei pipelines are the
    same in every config: checked in the test), built once for all configs."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    cfg = _reduce(point_at_data(Config.fromfile(_path(REDUCED_CHECK[0])), 'nuclei',
                                nuclei_root, workers=0), REDUCED_SIZE)
    init_default_scope('insplug')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    return dict(train=train[0], val=val[0], train_pipeline=cfg.train_dataloader.dataset.pipeline,
                val_pipeline=cfg.val_dataloader.dataset.pipeline)


@pytest.mark.parametrize('name', REDUCED_CHECK)
def test_added_nuclei_config_builds_and_trains_reduced(name, nuclei_root, reduced_batches):
    from mmdet.registry import MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(_path(name))
    assert cfg.leaderboard.method and cfg.leaderboard.family
    assert cfg.train_dataloader.dataset.type == 'NucleiDataset'
    assert cfg.val_evaluator.metric == ['segm']
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters >= 100
    cfg = _reduce(point_at_data(cfg, 'nuclei', nuclei_root, workers=0), REDUCED_SIZE)
    assert cfg.train_dataloader.dataset.pipeline == reduced_batches['train_pipeline']
    assert cfg.val_dataloader.dataset.pipeline == reduced_batches['val_pipeline']
    init_default_scope('insplug')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    for mod_name, module in model.named_modules():  # what NumClassCheckHook checks
        if getattr(module, 'num_classes', None) is not None:
            assert module.num_classes == 1, mod_name
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    log = model.train_step(pseudo_collate([copy.deepcopy(reduced_batches['train'])]),
                           optim_wrapper)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log.values()), log
    model.eval()
    val = copy.deepcopy(reduced_batches['val'])
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([val]))[0].pred_instances
    ori_shape = tuple(val['data_samples'].metainfo['ori_shape'][:2])
    assert len(pred) <= REDUCED_KEEP['max_per_img']
    assert tuple(pred.masks.shape[1:]) == ori_shape and len(pred.masks) == len(pred.scores)
    assert (pred.labels == 0).all()
