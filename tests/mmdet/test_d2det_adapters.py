"""D2Det's mmdet adapter: both variants train and predict (demo widths, random input), the
detection variant's soft-NMS keeps at most ``max_per_img`` boxes with decayed scores, and the
detection config builds (shapes only)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo', 'd2det_r18_shapes.py')


def _batch(with_masks):
    imgs = torch.randn(2, 3, 96, 128)
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                        scale_factor=(1.0, 1.0), pad_shape=(96, 128),
                                        batch_input_shape=(96, 128)))
        gt = InstanceData(bboxes=torch.tensor([[10., 10., 60., 50.], [70., 40., 120., 90.]]),
                          labels=torch.tensor([0, 3]))
        if with_masks:
            m = np.zeros((2, 96, 128), np.uint8)
            m[0, 10:50, 10:60] = 1
            m[1, 40:90, 70:120] = 1
            gt.masks = BitmapMasks(m, 96, 128)
        s.gt_instances = gt
        samples.append(s)
    return imgs, samples


@pytest.mark.parametrize('with_mask', [True, False])
def test_variants_train_and_predict(with_mask):
    init_default_scope('insplug')
    cfg = Config.fromfile(DEMO)
    cfg.model.roi_head.d2det_head.with_mask = with_mask
    cfg.model.test_cfg.rcnn.max_per_img = 7
    # few RoIs (CI time)
    cfg.model.train_cfg.rpn_proposal.max_per_img = 64
    cfg.model.train_cfg.rcnn.sampler.num = 32
    cfg.model.test_cfg.rpn.max_per_img = 40
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    imgs, samples = _batch(with_mask)
    losses = model.loss(imgs, samples)
    expect = {'loss_cls', 'loss_reg', 'loss_overlap'} | (
        {'loss_mask', 'loss_mask_iou'} if with_mask else set())
    assert expect <= set(losses) and all(torch.isfinite(losses[k]) for k in expect)
    sum(losses[k] for k in expect).backward()
    assert model.roi_head.d2det_head.reg_conv.weight.grad.abs().sum() > 0
    pool = model.roi_head.bbox_roi_extractor.roi_layers[0]
    assert pool.offset_fc[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model.predict(imgs, samples)
    for res in out:
        pred = res.pred_instances
        assert 0 < len(pred) <= 7
        assert bool((pred.bboxes[:, 2] >= pred.bboxes[:, 0]).all())
        assert bool((pred.bboxes >= 0).all()) and bool((pred.bboxes[:, 2] <= 128).all())
        if with_mask:
            assert pred.masks.shape == (len(pred), 96, 128) and pred.masks.dtype == torch.bool
            assert pred.mask_scores.shape == pred.scores.shape
        else:
            assert 'masks' not in pred
            assert bool((pred.scores[:-1] >= pred.scores[1:]).all())


def test_full_configs_build():
    """The detection config (which inherits the instance one) builds; the instance config's
    RoI head is built by tests/parity/test_d2det_parity.py."""
    init_default_scope('insplug')
    name = 'd2det_detection_r50_fpn_2x_coco.py'
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'd2det', name))
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    head = model.roi_head.d2det_head
    assert head.with_mask == ('instance' in name) and len(head.convs) == 8
    pool = model.roi_head.bbox_roi_extractor.roi_layers
    assert len(pool) == 4 and pool[0].sample_per_part == (1 if 'instance' in name else 2)
