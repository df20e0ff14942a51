"""CenterMask mmdet adapters: VoVNetV2 as a registered backbone, the shared-assigner FCOS head
against mmdet's own FCOS targets, and the detector's losses and predictions."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_sample(boxes, labels, size=128):
    s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                    scale_factor=(1.0, 1.0), pad_shape=(size, size),
                                    batch_input_shape=(size, size)))
    masks = np.zeros((len(boxes), size, size), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = 1
        m[y1:(y1 + y2) // 2, x1:(x1 + x2) // 2] = 0  # notch: masks are not boxes
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long), masks=BitmapMasks(masks, size, size))
    return s


def test_vovnet_registered_backbone():
    init_default_scope('insplug')
    net = MODELS.build(dict(type='VoVNetV2', arch='V-39', out_indices=(1, 2, 3),
                            frozen_stages=0))
    assert net.out_channels == [512, 768, 1024]
    assert not any(p.requires_grad for p in net.body.stem.parameters())
    net.train()
    outs = net(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [512, 768, 1024]


def test_shared_assigner_reproduces_mmdet_fcos_targets():
    kw = dict(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
              strides=[8, 16, 32], regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
              center_sampling=True, center_sample_radius=1.5,
              norm_cfg=dict(type='GN', num_groups=4))
    ours = MODELS.build(dict(type='CenterSamplingFCOSHead', **kw))
    ref = FCOSHead(**kw)
    gt = make_sample([[10, 12, 60, 40], [30, 30, 120, 110], [70, 5, 90, 20]], [0, 2, 1])
    points = ref.prior_generator.grid_priors([(16, 16), (8, 8), (4, 4)], device='cpu')
    l1, b1 = ours.get_targets(points, [gt.gt_instances])
    l2, b2 = ref.get_targets(points, [gt.gt_instances])
    for a, b, c, d in zip(l1, l2, b1, b2):
        assert torch.equal(a, b)
        pos = a < 3  # background box targets are unused (mmdet leaves arbitrary values)
        assert torch.allclose(c[pos], d[pos])
    assert sum(int((a < 3).sum()) for a in l1) > 10


@pytest.fixture(scope='module')
def model():
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/centermask_r18_shapes.py'))
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def test_losses_with_and_without_objects(model):
    model.train()
    samples = [make_sample([[10, 12, 60, 50], [70, 60, 120, 120]], [0, 4]),
               make_sample([], [])]
    losses = model.loss(torch.rand(2, 3, 128, 128), samples)
    assert {'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask', 'loss_maskiou'} <= \
        set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    # the GT boxes are appended as proposals, so the mask losses see positives at once
    assert float(losses['loss_mask']) > 0.5
    sum(losses.values()).backward()
    assert model.roi_head.mask_head.attention_conv.weight.grad.abs().sum() > 0
    assert model.roi_head.maskiou_head.fc_iou.weight.grad.abs().sum() > 0
    empty = model.loss(torch.rand(1, 3, 128, 128), [make_sample([], [])])
    assert float(empty['loss_mask']) == 0.0 and float(empty['loss_maskiou']) == 0.0


def test_predictions_rescored_and_rescaled(model):
    model.eval()
    s = make_sample([[10, 12, 60, 50]], [0])
    s.set_metainfo(dict(ori_shape=(64, 64), scale_factor=(2.0, 2.0)))
    model.bbox_head.test_cfg['score_thr'] = 0.0
    try:
        with torch.no_grad():
            x = model.extract_feat(torch.rand(1, 3, 128, 128))
            fcos = model.bbox_head.predict(x, [s], rescale=False)
            fcos_scores = fcos[0].scores.clone()
            out = model.roi_head.predict(x, fcos, [s.metainfo], rescale=True)[0]
    finally:
        model.bbox_head.test_cfg['score_thr'] = 0.05
    assert len(out) > 0 and out.masks.shape[1:] == (64, 64)
    # boxes rescaled to the original image and clipped to it (empty ones dropped)
    assert float(out.bboxes.min()) >= 0 and float(out.bboxes.max()) <= 64
    assert bool(((out.bboxes[:, 2:] - out.bboxes[:, :2]) > 0).all())
    # MaskIoU rescoring goes to `mask_scores` (segm); the box keeps its FCOS score (bbox)
    assert bool(torch.isin(out.scores, fcos_scores).all())
    assert not torch.allclose(out.mask_scores, out.scores)
