"""ZSI's full configs (48/17, 65/15 and their ZSI / GZSI variants) build, with the release's
settings, and the GZSI label maps equal ``gzsi_label_map`` over COCO's categories."""
import functools
import os.path as osp

import pytest
from mmengine.config import Config

import insplug.mmdet  # noqa: F401  (registers)
from insplug.core.zsi.splits import split_categories
from insplug.mmdet.zsi.zsi_mask_rcnn import gzsi_label_map
from insplug.registry import MODELS

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'zsi')
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49,
            50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74,
            75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


@functools.lru_cache(maxsize=None)
def _cfg(split, variant):
    return Config.fromfile(osp.join(ROOT, f'zsi_mask_rcnn_r101_fpn_1x_coco_{split}{variant}.py'))


@pytest.mark.parametrize('split,num_seen,lr,warmup', [('48_17', 48, 0.01, 500),
                                                      ('65_15', 65, 0.0075, 7000)])
def test_release_settings(split, num_seen, lr, warmup):
    cfg = _cfg(split, '_zsi')  # the base's settings, through a variant (configs load slowly)
    assert cfg.model.roi_head.bbox_head.num_classes == num_seen
    assert cfg.model.roi_head.mask_head.num_classes == num_seen
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.param_scheduler[0].end == warmup
    assert cfg.train_dataloader.dataset.subset == 'seen'
    assert cfg.val_dataloader.dataset.subset == 'unseen'
    assert cfg.model.mode == 'zsi'
    assert _cfg(split, '_gzsi').val_dataloader.dataset.subset == 'all'


@pytest.mark.parametrize('split', ['48_17', '65_15'])
def test_gzsi_label_map(split):
    from mmdet.datasets import CocoDataset
    cats = [dict(id=i, name=n) for i, n in zip(COCO_IDS, CocoDataset.METAINFO['classes'])]
    seen, unseen = split_categories(cats, split)
    all_names = [c['name'] for c in sorted(seen + unseen, key=lambda c: c['id'])]
    expected = gzsi_label_map([c['name'] for c in seen], [c['name'] for c in unseen], all_names)
    assert _cfg(split, '_gzsi').model.label_map == expected


def test_gzsi_model_builds():
    cfg = _cfg('48_17', '_gzsi')
    model = MODELS.build(cfg.model)
    assert model.roi_head.bbox_head.mode == model.roi_head.mask_head.mode == 'gzsi'
    assert model.roi_head.bbox_head.voc.shape == (300, 4071)
    assert model.rpn_head.vec_fb.weight.shape == (6, 300, 1, 1)
