"""mmdet adapters of RefineMask: building from a stock mmdet config with ``insplug.``-prefixed
types, the configs, targets from bitmap and polygon masks, one loss/backward and one predict
on a hand-made batch that includes an image without instances."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')

SMALL_HEAD = dict(num_convs_instance=2, conv_in_channels_instance=16,
                  conv_out_channels_instance=32, num_convs_semantic=2,
                  conv_in_channels_semantic=16, conv_out_channels_semantic=8)


def small_model_cfg(cfg_model, mask_head_type, roi_head_type, num_classes=4):
    """Shrink a Mask R-CNN model config (R18, 16-channel FPN) and plug RefineMask into it."""
    model = cfg_model
    model.backbone.update(depth=18, init_cfg=None, frozen_stages=-1, norm_eval=False)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=16)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    roi = model.roi_head
    roi.type = roi_head_type
    roi.bbox_roi_extractor.out_channels = 16
    roi.bbox_head.update(in_channels=16, fc_out_channels=32, num_classes=num_classes)
    roi.mask_roi_extractor.out_channels = 16
    roi.mask_head = ConfigDict(type=mask_head_type, num_classes=num_classes, **SMALL_HEAD)
    model.train_cfg.rcnn.sampler.num = 64
    return model


STOCK_CONFIG = """
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['insplug'], allow_failed_imports=False)
model = dict(roi_head=dict(type='insplug.RefineRoIHead',
                           mask_head=dict(_delete_=True, type='insplug.RefineMaskHead')))
"""


def stock_mmdet_model_cfg(tmp_path):
    """A user's config on top of stock mmdet Mask R-CNN (default_scope 'mmdet'), shrunk."""
    path = tmp_path / 'stock_refinemask.py'
    path.write_text(STOCK_CONFIG)
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.roi_head.type == 'insplug.RefineRoIHead'
    return small_model_cfg(cfg.model, cfg.model.roi_head.mask_head.type, cfg.model.roi_head.type)


def batch(size=96, polygons=False):
    """Two images: the first with two instances (a square and a ring), the second empty."""
    samples = []
    for i in range(2):
        meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                    batch_input_shape=(size, size), scale_factor=(1.0, 1.0))
        s = DetDataSample(metainfo=meta)
        n = 2 if i == 0 else 0
        boxes = torch.tensor([[8.0, 10.0, 50.0, 60.0], [50.0, 30.0, 90.0, 80.0]])[:n]
        if polygons:
            polys = [[np.array([8, 10, 50, 10, 50, 60, 8, 60], dtype=np.float64)],
                     [np.array([50, 30, 90, 30, 70, 80], dtype=np.float64)]][:n]
            masks = PolygonMasks(polys, size, size)
        else:
            m = np.zeros((n, size, size), dtype=np.uint8)
            yy, xx = np.mgrid[:size, :size]
            if n:
                m[0, 10:60, 8:50] = 1
                r = np.hypot(yy - 55, xx - 70)
                m[1] = (r < 20) & (r > 8)
            masks = BitmapMasks(m, size, size)
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([1, 3])[:n],
                                      masks=masks)
        samples.append(s)
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 3, size, size, generator=gen) * 255).to(torch.uint8)
    return list(images), samples


@pytest.fixture
def mmdet_scope():
    """Build under mmdet's scope, as a stock mmdet config does (default_scope='mmdet')."""
    import insplug  # noqa: F401  (the `custom_imports` of a stock config)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def build_stock(tmp_path):
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(stock_mmdet_model_cfg(tmp_path))
    model.init_weights()
    return model


def test_stock_mmdet_config_builds_prefixed_refinemask(mmdet_scope, tmp_path):
    from insplug.mmdet.refinemask import RefineMaskHead, RefineRoIHead
    model = build_stock(tmp_path)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert type(model.roi_head) is RefineRoIHead
    assert type(model.roi_head.mask_head) is RefineMaskHead
    assert model.roi_head.mask_head.num_classes == 4


def test_loss_and_predict_on_batch_with_empty_image(mmdet_scope, tmp_path):
    model = build_stock(tmp_path)
    images, samples = batch()
    model.train()
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    losses = model(**data, mode='loss')
    assert {'loss_instance', 'loss_semantic'} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    head = model.roi_head.mask_head
    for name, p in head.named_parameters():
        assert p.grad is not None, name
    # predict: masks in the original image, one per box, boolean
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=images, data_samples=batch()[1]), False)
        results = model(**data, mode='predict')
    for res in results:
        pred = res.pred_instances
        assert pred.masks.shape[1:] == (96, 96) and pred.masks.dtype == torch.bool
        assert len(pred.masks) == len(pred.bboxes)


def test_targets_from_bitmaps_and_polygons_agree(mmdet_scope, tmp_path):
    """Stage targets crop the assigned GT at every stage size; polygons and bitmaps of the same
    square give the same targets; the semantic target is the union at stride 4."""
    from mmdet.models.task_modules.samplers import SamplingResult
    from mmdet.models.task_modules.assigners import AssignResult
    model = build_stock(tmp_path)
    head = model.roi_head.mask_head
    targets = {}
    for polygons in (False, True):
        _, samples = batch(polygons=polygons)
        gt = samples[0].gt_instances
        priors = torch.tensor([[8.0, 10.0, 50.0, 60.0], [4.0, 6.0, 54.0, 64.0]])
        assign = AssignResult(2, torch.tensor([1, 1]), torch.ones(2), labels=torch.tensor([1, 1]))
        res = SamplingResult(pos_inds=torch.tensor([0, 1]), neg_inds=torch.tensor([], dtype=torch.long),
                             priors=priors, gt_bboxes=gt.bboxes, assign_result=assign,
                             gt_flags=torch.zeros(2, dtype=torch.uint8))
        stage, semantic = head.get_targets([res], [gt], (24, 24))
        targets[polygons] = stage
        assert [tuple(t.shape) for t in stage] == [(2, s, s) for s in (14, 28, 56, 112)]
        # the first prior is the square's own box: ones everywhere but (maybe) the outer ring
        assert all(bool((t[0, 1:-1, 1:-1] == 1).all()) for t in stage)
        # the second is 4 px larger on each side: a border of zeros, ones inside
        t = stage[3][1]
        assert t[0].sum() == 0 and t[:, 0].sum() == 0 and t[56, 56] == 1
        expected = torch.as_tensor(gt.masks.to_ndarray().max(0), dtype=torch.float32)
        down = torch.nn.functional.interpolate(expected[None, None], size=(24, 24),
                                               mode='bilinear', align_corners=False)[0, 0]
        assert torch.equal(semantic[0], (down >= 0.5).float())
    assert torch.equal(targets[False][0][0], targets[True][0][0])


def test_configs_build_and_match_official_settings():
    import insplug  # noqa: F401
    from insplug.registry import MODELS
    full = Config.fromfile(osp.join(CONFIGS, 'refinemask_r50.py'))
    head = full.model.roi_head.mask_head
    assert head.stage_instance_loss_weight == [0.25, 0.5, 0.75, 1.0]
    assert head.semantic_loss_weight == 1.0 and head.boundary_width == 2
    assert head.stage_sup_size == [14, 28, 56, 112] and head.dilations == [1, 3, 5]
    assert head.stage_num_classes == [80, 80, 80, 80]
    assert full.model.roi_head.bbox_head.loss_cls.loss_weight == 2.0
    assert full.model.roi_head.bbox_head.loss_bbox.loss_weight == 2.0
    assert full.optim_wrapper.optimizer.lr == 0.02
    assert full.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)
    assert full.train_cfg.max_epochs == 12
    assert full.param_scheduler[1].milestones == [8, 11]
    assert full.train_dataloader.batch_size * 8 == 16
    assert full.default_scope == 'insplug'
    with DefaultScope.overwrite_default_scope('insplug'):
        demo = Config.fromfile(osp.join(CONFIGS, 'demo', 'refinemask_r18_shapes.py'))
        model = MODELS.build(demo.model)
        assert type(model.roi_head).__name__ == 'RefineRoIHead'
        assert model.roi_head.mask_head.num_classes == 5


def test_bad_configs_give_clear_errors(mmdet_scope, tmp_path):
    from mmdet.registry import MODELS
    cfg = stock_mmdet_model_cfg(tmp_path)
    cfg.roi_head.mask_roi_extractor = None
    with pytest.raises(ValueError, match='mask_roi_extractor'):
        MODELS.build(cfg)
    cfg = stock_mmdet_model_cfg(tmp_path)
    cfg.roi_head.mask_head.stage_instance_loss_weight = [1.0, 1.0]
    with pytest.raises(ValueError, match='stage_instance_loss_weight'):
        MODELS.build(cfg)
