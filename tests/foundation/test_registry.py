"""insplug's registry scope: children of mmdet's, usable from both sides, no name collisions."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import insplug.registry as insplug_registry
from insplug.registry import DATASETS, MODELS, UnknownTypeError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ALL = [getattr(insplug_registry, name) for name in dir(insplug_registry)
       if name.isupper() and hasattr(getattr(insplug_registry, name), 'module_dict')]


def test_every_registry_is_a_child_of_mmdet():
    assert len(ALL) >= 18
    for registry in ALL:
        assert registry.scope == 'insplug'
        assert registry.parent.scope == 'mmdet', registry.name
        assert registry.parent._children['insplug'] is registry


def test_no_insplug_name_shadows_an_mmdet_or_mmengine_name():
    MODELS.import_from_location()
    collisions = []
    for registry in ALL:
        ancestors = registry.parent
        while ancestors is not None:
            collisions += [(registry.name, n) for n in registry.module_dict
                           if n in ancestors.module_dict]
            ancestors = ancestors.parent
    assert collisions == []
    assert 'ShapesDataset' in DATASETS.module_dict  # the check above did look at real names


def test_stock_mmdet_scope_resolves_insplug_prefix_by_scope_import(demo_data):
    """(a) In a fresh process with default scope 'mmdet' and insplug never imported, a
    type='insplug.X' is found: mmengine imports insplug.registry by the scope name."""
    code = f"""
import sys
from mmengine.registry import init_default_scope
init_default_scope('mmdet')
from mmdet.registry import DATASETS
assert 'insplug' not in sys.modules
ds = DATASETS.build(dict(type='insplug.ShapesDataset', data_root={demo_data['root']!r},
                         ann_file='val/annotations.json', data_prefix=dict(img='val/images/'),
                         test_mode=True, pipeline=[]))
print(type(ds).__module__, len(ds))
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ['insplug.mmdet.datasets', '12']


def test_custom_imports_in_a_stock_mmdet_config(tmp_path, demo_data):
    """(a) custom_imports=dict(imports=['insplug']) in a config with default_scope 'mmdet'."""
    cfg_file = tmp_path / 'stock.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::_base_/default_runtime.py'\n"
        "custom_imports = dict(imports=['insplug'], allow_failed_imports=False)\n"
        f"dataset = dict(type='insplug.ShapesDataset', data_root={demo_data['root']!r},\n"
        "               ann_file='val/annotations.json', data_prefix=dict(img='val/images/'),\n"
        "               test_mode=True, pipeline=[])\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet'
    from mmdet.registry import DATASETS as MMDET_DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = MMDET_DATASETS.build(cfg.dataset)
    assert type(dataset).__name__ == 'ShapesDataset' and len(dataset) == 12


def test_insplug_scope_builds_mmdet_types_unprefixed():
    """(b) A real insplug config (default_scope='insplug') builds mmdet's MaskRCNN, ResNet, FPN."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py'))
    assert cfg.default_scope == 'insplug'
    with DefaultScope.overwrite_default_scope('insplug'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'MaskRCNN'
    assert type(model.backbone).__name__ == 'ResNet' and type(model.neck).__name__ == 'FPN'


def test_unknown_type_names_insplug_and_alternatives():
    with pytest.raises(UnknownTypeError) as info:
        with DefaultScope.overwrite_default_scope('insplug'):
            MODELS.build(dict(type='MaskRCN'))
    message = str(info.value)
    assert "insplug's 'model' registry" in message
    assert "'mmdet.MaskRCNN'" in message  # the close match, with its scope
    assert 'insplug registers here:' in message


def test_unknown_type_through_the_train_tool(tmp_path):
    cfg_file = tmp_path / 'bad.py'
    cfg_file.write_text(
        f"_base_ = {osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py')!r}\n"
        "model = dict(type='MaskRCNNN')\n")
    out = subprocess.run([sys.executable, 'tools/train.py', str(cfg_file), '--work-dir',
                          str(tmp_path / 'wd')], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "[insplug] type 'MaskRCNNN'" in out.stderr and "'mmdet.MaskRCNN'" in out.stderr
