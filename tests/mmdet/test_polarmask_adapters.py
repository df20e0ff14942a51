"""PolarMask mmdet adapters: the annotation filter, the head's losses on a batch with and without
objects, its predictions (masks of the original size), and the full config."""
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
from insplug.registry import MODELS, TRANSFORMS

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


def test_filter_annotations_drops_what_the_release_drops():
    from mmdet.structures.bbox import HorizontalBoxes
    init_default_scope('insplug')
    t = TRANSFORMS.build(dict(type='PolarMaskFilterAnnotations'))
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[0, 0:4, 0:4] = 1            # 16 px, 4 x 4 box: w < 10 and h < 10 -> dropped
    masks[1, 0:2, 0:30] = 1           # 60 px, 30 x 2: kept (w >= 10)
    masks[2, 10:25, 10:25] = 1
    masks[2, 10:25, 11:25] = 0        # 15 px in a 1 x 15 line box: area <= 15 -> dropped
    masks[3, 30:60, 30:60] = 1        # kept
    boxes = np.array([[0, 0, 4, 4], [0, 0, 30, 2], [10, 10, 11, 25], [30, 30, 60, 60]],
                     np.float32)
    results = dict(gt_bboxes=HorizontalBoxes(boxes), gt_bboxes_labels=np.arange(4),
                   gt_masks=BitmapMasks(masks, 64, 64),
                   gt_ignore_flags=np.zeros(4, bool))
    out = t(results)
    assert out['gt_bboxes_labels'].tolist() == [1, 3]
    assert len(out['gt_masks']) == 2
    only_small = dict(gt_bboxes=HorizontalBoxes(boxes[:1]), gt_bboxes_labels=np.arange(1),
                      gt_masks=BitmapMasks(masks[:1], 64, 64), gt_ignore_flags=np.zeros(1, bool))
    assert t(only_small) is None       # the release picks another image
    # polygon annotations (COCO) are rasterised as pycocotools does (the release's annToMask)
    from mmdet.structures.mask import PolygonMasks
    polys = PolygonMasks([[np.array([2., 2., 6., 2., 6., 5., 2., 5.])],     # ~12 px, 4 x 3
                          [np.array([2., 2., 40., 2., 40., 3., 2., 3.])],   # 38 x 1: w >= 10
                          [np.array([10., 10., 50., 10., 50., 50., 10., 50.])]], 64, 64)
    res = t(dict(gt_bboxes=HorizontalBoxes(np.array([[2, 2, 6, 5], [2, 2, 40, 3],
                                                     [10, 10, 50, 50]], np.float32)),
                 gt_bboxes_labels=np.arange(3), gt_masks=polys,
                 gt_ignore_flags=np.zeros(3, bool)))
    pixels = polys.to_ndarray().reshape(3, -1).sum(1)
    assert res['gt_bboxes_labels'].tolist() == [i for i in (1, 2) if pixels[i] > 15]
    assert 2 in res['gt_bboxes_labels'].tolist()


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


def test_full_config_builds_with_the_release_layout():
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/polarmask/polarmask_r50_1x.py'))
    head = cfg.model.bbox_head
    assert head.loss_bbox.type == 'LegacyBoxIoULoss' and head.box_offset == 1.0
    types = [t['type'] for t in cfg.train_pipeline]
    assert types.index('PolarMaskFilterAnnotations') == types.index('LoadAnnotations') + 1
    built = MODELS.build(cfg.model.bbox_head)
    # GN towers without conv bias, as the release (bias = norm_cfg is None)
    assert built.cls_convs[0].conv.bias is None and built.mask_convs[0].conv.bias is None
