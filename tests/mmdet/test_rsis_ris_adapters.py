"""RSIS / RIS mmdet adapters: every config builds (full and demo), the RSIS trunk's five
levels, the curriculum schedule (release rule, hand-worked), the merge tool, and the converter
output loading strictly into the full VOC model's head."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from insplug.converters import convert_state_dict
from insplug.core.rsis import curriculum_state
from insplug.registry import MODELS

REPO = osp.join(osp.dirname(__file__), '..', '..')
CONFIGS = ['rsis/rsis_r101_voc.py', 'rsis/rsis_r101_cvppp.py', 'rsis/rsis_r101_cityscapes.py',
           'ris/ris_cvppp.py', 'demo/rsis_r18_shapes.py', 'demo/ris_r18_shapes.py']


def build(path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    cfg.model.backbone.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


@pytest.fixture(scope='module')
def voc_model():
    return build('rsis/rsis_r101_voc.py')[0]


@pytest.mark.parametrize('path', CONFIGS)
def test_configs_build(path, voc_model):
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    if cfg.model.backbone.get('depth') == 101:  # the ResNet-101 model is built once (voc_model)
        with DefaultScope.overwrite_default_scope('insplug'):
            head = MODELS.build(cfg.model.head)
        assert cfg.model.backbone.type == voc_model.backbone.__class__.__name__
    else:
        head = build(path)[0].head
    assert head.num_classes == cfg.model.head.num_classes


def test_rsis_trunk_levels():
    model, _ = build('demo/rsis_r18_shapes.py')
    feats = model.backbone(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == [128, 64, 32, 16, 16]
    assert [tuple(f.shape[-2:]) for f in feats] == [(2, 3), (4, 6), (8, 12), (16, 24), (32, 48)]


def test_ris_release_trunk_size():
    model, _ = build('ris/ris_cvppp.py')
    with torch.no_grad():
        x = model.backbone(torch.zeros(1, 3, 530, 500))[0]
    assert tuple(x.shape) == (1, 30, 106, 100)  # the release's 106 x 100 grid


def test_curriculum_schedule():
    # CVPPP script: curriculum from 2 steps, min_steps 5, stop loss after 500, no class loss
    kw = dict(max_steps=20, start_steps=2, interval=30, class_loss_after=-1,
              stop_loss_after=500, min_steps=5)
    assert curriculum_state(0, **kw) == (2, False, False)
    assert curriculum_state(95, **kw) == (5, False, False)
    assert curriculum_state(499, **kw) == (18, False, False)
    assert curriculum_state(510, **kw) == (19, False, True)
    assert curriculum_state(5000, **kw) == (20, False, True)
    # stop loss waits for a limit above min_steps
    assert curriculum_state(10, 20, start_steps=2, interval=100, stop_loss_after=0,
                            min_steps=5) == (2, True, False)
    assert curriculum_state(10, 6, curriculum=False) == (6, True, True)


def test_converter_loads_full_voc_head(voc_model):
    """Official-layout keys (from the insplug model's own names mapped back) -> converter ->
    strict load into the full ResNet-101 VOC model."""
    model = voc_model
    state = model.state_dict()
    official = {}
    for k, v in state.items():
        if k.startswith('backbone.'):
            official['encoder.base.' + k[len('backbone.'):]] = v
        elif k.startswith('head.skips.'):
            kind, idx, rest = k[len('head.skips.'):].split('.', 2)
            official[f"encoder.{'sk' if kind == 'convs' else 'bn'}{5 - int(idx)}.{rest}"] = v
        else:
            rest = k[len('head.decoder.'):].replace('clstm.', 'clstm_list.').replace(
                '.gates.', '.Gates.')
            official['decoder.' + rest] = v
    official['encoder.base.fc.weight'] = torch.zeros(1000, 2048)
    official['encoder.base.fc.bias'] = torch.zeros(1000)
    converted = convert_state_dict('rsis', official)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


def test_merge_tool(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'merge_rsis_release', osp.join(REPO, 'tools', 'merge_rsis_release.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    merged = mod.merge({'module.sk5.weight': torch.zeros(1)}, {'fc_stop.bias': torch.ones(1)})
    assert set(merged) == {'encoder.sk5.weight', 'decoder.fc_stop.bias'}


def test_curriculum_hook_sets_head_state():
    from types import SimpleNamespace

    from insplug.registry import HOOKS
    model, _ = build('demo/rsis_r18_shapes.py')
    with DefaultScope.overwrite_default_scope('insplug'):
        hook = HOOKS.build(dict(type='RSISCurriculumHook', start_steps=2, interval=10,
                                class_loss_after=25, stop_loss_after=5, min_steps=2))
    hook.before_train_iter(SimpleNamespace(model=model, iter=12, epoch=0), 0)
    assert (model.head.train_steps_limit, model.head.use_class_loss,
            model.head.use_stop_loss) == (3, False, True)


def test_ris_curriculum_hook_limits_training_steps():
    """RISCurriculumHook: limit 2 + 4 * (iter // 50) capped by seq_length (6); the head's loss
    is then the core loss at that sequence length (hand-picked GT counts 1 and 4: 2 and 2
    steps at the start, 2 and 5 steps once the limit is 6)."""
    from types import SimpleNamespace

    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    from insplug.core.ris.pipeline import ris_gt_on_grid, ris_train_loss
    from insplug.mmdet.rsis.modules import gt_lists
    from insplug.registry import HOOKS
    torch.manual_seed(0)
    model, _ = build('demo/ris_r18_shapes.py')
    with DefaultScope.overwrite_default_scope('insplug'):
        hook = HOOKS.build(dict(type='RISCurriculumHook', start_steps=2, increment=4,
                                interval=50))
    feats = (torch.randn(2, 32, 16, 16),)
    samples = []
    for count in (1, 4):
        masks = torch.zeros(count, 64, 64, dtype=torch.bool)
        for k in range(count):
            masks[k, 8 * k:8 * k + 12, 4:20] = True
        s = DetDataSample(metainfo=dict(batch_input_shape=(64, 64), img_shape=(64, 64)))
        s.gt_instances = InstanceData(masks=BitmapMasks(masks.numpy(), 64, 64),
                                      labels=torch.arange(count) % 5)
        samples.append(s)
    gt = ris_gt_on_grid(*gt_lists(samples, feats[0].device), (64, 64), (16, 16))
    for it, limit in ((0, 2), (49, 2), (50, 6), (400, 6)):
        hook.before_train_iter(SimpleNamespace(model=model, iter=it), 0)
        assert model.head.train_steps_limit == limit
        loss = model.head.loss(feats, samples)['loss_ris']
        ref = ris_train_loss(model.head.net, feats[0], *gt, limit, 1.0, 1.0)
        assert torch.allclose(loss, ref)
    # the two phases differ (the 4-instance image runs 2 then 5 steps)
    model.head.train_steps_limit = 2
    short = model.head.loss(feats, samples)['loss_ris']
    model.head.train_steps_limit = None
    assert not torch.allclose(short, model.head.loss(feats, samples)['loss_ris'])
