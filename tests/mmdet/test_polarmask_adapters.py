"""PolarMask mmdet adapters: the registered assigner (mask vs box centre), the head's losses on
a batch with and without objects, and its predictions."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401  (registers everything)
from insplug.mmdet.assigners.center_sampling import level_priors
from insplug.registry import MODELS, TASK_UTILS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_sample(masks, labels, size=128):
    """DetDataSample with boxes derived from the given (G, H, W) uint8 masks."""
    s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                    scale_factor=(1.0, 1.0), pad_shape=(size, size),
                                    batch_input_shape=(size, size)))
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(np.asarray(masks, dtype=np.uint8).reshape(-1, size, size), size, size))
    return s


def l_shape(size=128):
    m = np.zeros((size, size), np.uint8)
    m[20:100, 20:40] = 1   # long vertical bar
    m[80:100, 20:100] = 1  # foot
    return m


def test_assigner_mask_centre_differs_from_box_centre():
    init_default_scope('insplug')
    m = l_shape()
    gt = make_sample([m], [0]).gt_instances
    pts = torch.stack(torch.meshgrid(torch.arange(16.) * 8 + 4, torch.arange(16.) * 8 + 4,
                                     indexing='xy'), -1).reshape(-1, 2)
    priors = level_priors([pts], [8], [(-1, 1e8)])
    by_mask = TASK_UTILS.build(dict(type='CenterSamplingAssigner', center='mask'))
    by_box = TASK_UTILS.build(dict(type='CenterSamplingAssigner', center='box'))
    pos_mask = pts[by_mask.assign(priors, gt).gt_inds > 0]
    pos_box = pts[by_box.assign(priors, gt).gt_inds > 0]
    ys, xs = np.nonzero(m)
    mass = torch.tensor([xs.mean() + 0.5, ys.mean() + 0.5])
    # positives lie within 1.5 strides of their own centre
    assert ((pos_mask - mass).abs().max(dim=1).values < 12).all()
    assert ((pos_box - torch.tensor([60.0, 60.0])).abs().max(dim=1).values < 12).all()
    assert not torch.equal(pos_mask, pos_box)
    with pytest.raises(ValueError, match='with_mask'):
        by_mask.assign(priors, InstanceData(bboxes=gt.bboxes, labels=gt.labels))


@pytest.fixture(scope='module')
def model():
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/polarmask_r18_shapes.py'))
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def test_losses_with_and_without_objects(model):
    disk = np.zeros((128, 128), np.uint8)
    yy, xx = np.mgrid[:128, :128]
    disk[(yy - 40) ** 2 + (xx - 80) ** 2 <= 20 ** 2] = 1
    samples = [make_sample([l_shape(), disk], [1, 0]), make_sample([], [])]
    model.train()
    losses = model.loss(torch.rand(2, 3, 128, 128), samples)
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_mask', 'loss_centerness'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses['loss_mask']) > 0  # random rays cannot match the contours
    sum(losses.values()).backward()
    assert model.bbox_head.conv_rays.weight.grad.abs().sum() > 0
    empty = model.loss(torch.rand(1, 3, 128, 128), [make_sample([], [])])
    assert float(empty['loss_mask']) == 0.0


def test_predictions_are_masks_of_the_original_size(model):
    model.eval()
    s = make_sample([l_shape()], [0])
    s.set_metainfo(dict(ori_shape=(64, 64), scale_factor=(2.0, 2.0)))
    model.bbox_head.test_cfg['score_thr'] = 0.0  # untrained: keep every candidate
    try:
        with torch.no_grad():
            out = model.predict(torch.rand(1, 3, 128, 128), [s])[0].pred_instances
    finally:
        model.bbox_head.test_cfg['score_thr'] = 0.05
    assert len(out) > 0
    assert out.masks.shape[1:] == (64, 64) and out.masks.dtype == torch.bool
    assert len(out) <= model.bbox_head.test_cfg['max_per_img']
    assert (out.bboxes[:, 2:] <= 64 + 1e-3).all()
