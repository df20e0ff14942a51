"""The boxes-only data path: ``BoxesOnly`` leaves no mask in the packed sample, and BoxCaseg's
loss is the same whatever masks the annotation file holds (no mask reaches the loss)."""
import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, pseudo_collate

import insplug.mmdet  # noqa: F401
from insplug.registry import MODELS


@pytest.fixture(autouse=True)
def _insplug_default_scope():
    """Each test builds in insplug's scope, whatever scope an earlier test left as default."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('insplug'):
        yield


def _sample(mask_fill):
    img = np.random.RandomState(0).randint(0, 255, (64, 64, 3)).astype(np.uint8)
    poly = [[8., 8., 30., 8., 30., 40., 8., 40.]] if mask_fill else [[0., 0., 63., 0., 63., 63.]]
    return dict(img=img, img_id=1, img_path='x.png', ori_shape=(64, 64), img_shape=(64, 64),
                height=64, width=64,
                instances=[dict(bbox=[8., 8., 30., 40.], bbox_label=1, ignore_flag=0, mask=poly),
                           dict(bbox=[30., 20., 60., 60.], bbox_label=0, ignore_flag=0,
                                mask=copy.deepcopy(poly))])


PIPELINE = [dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='BoxesOnly'),
            dict(type='PackDetInputs')]


def test_boxes_only_packs_no_mask():
    data = Compose(PIPELINE)(_sample(True))
    gt = data['data_samples'].gt_instances
    assert 'masks' not in gt and len(gt) == 2
    assert torch.equal(gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') else gt.bboxes,
                       torch.tensor([[8., 8., 30., 40.], [30., 20., 60., 60.]]))


def test_boxcaseg_loss_independent_of_masks():
    model = MODELS.build(dict(
        type='BoxCaseg', crop_size=64, in_channels=30,
        backbone=dict(type='mmdet.ResNet', depth=18, base_channels=2, out_indices=(0, 1, 2, 3),
                      norm_eval=False),
        data_preprocessor=dict(type='mmdet.DetDataPreprocessor', pad_size_divisor=32)))
    model.train()
    losses = []
    for fill in (True, False):   # two different masks in the annotation
        batch = model.data_preprocessor(pseudo_collate([Compose(PIPELINE)(_sample(fill))]),
                                        training=True)
        assert all('masks' not in s.gt_instances for s in batch['data_samples'])
        torch.manual_seed(0)
        out = model.loss(batch['inputs'], batch['data_samples'])
        losses.append({k: float(v) for k, v in out.items()})
    assert losses[0] == losses[1]
    assert losses[0]['loss_salient'] == 0.0   # no salient crop: the pixel loss is off


def test_salient_sample_uses_its_mask():
    """Control: with masks kept (a salient image), the loss does depend on them."""
    model = MODELS.build(dict(
        type='BoxCaseg', crop_size=64, in_channels=30,
        backbone=dict(type='mmdet.ResNet', depth=18, base_channels=2, out_indices=(0, 1, 2, 3),
                      norm_eval=False),
        data_preprocessor=dict(type='mmdet.DetDataPreprocessor', pad_size_divisor=32)))
    model.train()
    pipe = Compose([PIPELINE[0], PIPELINE[2]])
    out = []
    for fill in (True, False):
        batch = model.data_preprocessor(pseudo_collate([pipe(_sample(fill))]), training=True)
        out.append(float(model.loss(batch['inputs'], batch['data_samples'])['loss_salient']))
    assert out[0] != pytest.approx(out[1])
