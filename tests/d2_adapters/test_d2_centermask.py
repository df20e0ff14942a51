"""CenterMask (and VoVNetV2) through detectron2: ``GeneralizedRCNN`` + ``InsplugFCOS`` +
``InsplugCenterROIHeads`` / ``InsplugSpatialAttentionMaskHead``, VoVNet backbone builders.

* official golden (``tests/fixtures/official/centermask/golden.pt``, the whole centermask2 model
  VoVNet + FPN + FCOS + CenterROIHeads at small widths, recorded from the release): its
  official-layout state_dict goes through ``official_to_detectron2`` (= ``to_detectron2`` of the
  ``centermask`` converter's output), loads strictly into the model built from
  ``configs/detectron2/centermask_v39_3x.yaml`` and reproduces the five training losses (rel
  1e-5) and the final detections (boxes, scores, mask scores 1e-5; 0 differing mask pixels);
* the shapes demo yaml trains one step (finite losses, gradients reach FCOS, SAG-Mask and
  MaskIoU) and predicts image-sized boolean masks;
* agreement with the mmdet adapter (``configs/demo/centermask_r18_shapes.py``): its weights go
  through ``to_detectron2`` and load strictly; the same batch gives the same losses (1e-5) and
  the same detections (boxes, scores, mask scores 1e-5; 0 differing mask pixels);
* ``to_detectron2`` of each full-size mmdet config's random weights loads strictly into the
  model of the matching yaml (same architecture);
* the yaml and LazyConfig equal the mmdet full configs key by key.
"""
import os.path as osp

import numpy as np
import pytest

# d2_utils imports no detectron2
from d2_utils import (D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch,
                      mmdet_samples)

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import (BACKBONE_REGISTRY, ROI_HEADS_REGISTRY,  # noqa: E402
                                 build_model)
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.converters.centermask import official_to_detectron2, to_detectron2  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.centermask import (InsplugCenterROIHeads,  # noqa: E402
                                           InsplugSpatialAttentionMaskHead)

FIXTURE = osp.join(REPO, 'tests', 'fixtures', 'official', 'centermask', 'golden.pt')
SHAPES = 'centermask_r18_shapes.yaml'


def yaml_cfg(name, *opts):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, name))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    return cfg


def load_strict(model, state):
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def test_registered_names():
    assert ROI_HEADS_REGISTRY.get('InsplugCenterROIHeads') is InsplugCenterROIHeads
    assert ROI_MASK_HEAD_REGISTRY.get('InsplugSpatialAttentionMaskHead') is \
        InsplugSpatialAttentionMaskHead
    for name in ('build_insplug_vovnet_backbone', 'build_insplug_vovnet_fpn_backbone',
                 'build_insplug_fcos_vovnet_fpn_backbone'):
        assert BACKBONE_REGISTRY.get(name) is not None


# --------------------------------------------------------------------------- official golden
@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)['detector']


@pytest.fixture
def golden_model(golden, monkeypatch):
    from insplug.core.backbones import vovnet
    monkeypatch.setitem(vovnet.ARCH_SPECS, 'golden', dict(golden['spec']))
    ch, k = golden['channels'], golden['num_classes']
    cfg = yaml_cfg('centermask_v39_3x.yaml',
                   'MODEL.INSPLUG.VOVNET.CONV_BODY', 'golden', 'MODEL.FPN.OUT_CHANNELS', ch,
                   'MODEL.ROI_MASK_HEAD.CONV_DIM', ch,
                   'MODEL.INSPLUG.CENTERMASK.MASKIOU_CONV_DIM', ch,
                   'MODEL.INSPLUG.CENTERMASK.MASKIOU_FC_DIM', golden['fc_channels'],
                   'MODEL.ROI_HEADS.NUM_CLASSES', k, 'MODEL.INSPLUG.FCOS.NUM_CLASSES', k)
    assert torch.allclose(torch.tensor(cfg.MODEL.PIXEL_MEAN), golden['pixel_mean'])
    assert torch.allclose(torch.tensor(cfg.MODEL.PIXEL_STD), golden['pixel_std'])
    model = build_model(cfg)
    load_strict(model, official_to_detectron2(golden['state_dict']))
    return model


def golden_inputs(g, train):
    out = []
    for img, (h, w), (oh, ow), gt in zip(g['images'], g['image_sizes'], g['ori_sizes'], g['gt']):
        d = dict(image=img.float(), height=oh, width=ow)
        if train:
            d['instances'] = Instances(
                (h, w), gt_boxes=Boxes(gt['boxes'].float()), gt_classes=gt['classes'],
                gt_masks=PolygonMasks([[p.numpy() for p in obj] for obj in gt['polygons']]))
        out.append(d)
    return out


def unpack(bits, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy())[:n].reshape(shape).astype(bool))


def test_official_golden_losses_and_detections(golden, golden_model):
    g, model = golden, golden_model
    model.train()
    torch.manual_seed(0)
    with EventStorage():
        losses = model(golden_inputs(g, train=True))
    assert set(losses) == set(g['losses'])
    for name, ref in g['losses'].items():
        a, b = float(losses[name]), float(ref)
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (name, a, b)
    model.eval()
    with torch.no_grad():
        out = model(golden_inputs(g, train=False))
    for i, o in enumerate(out):
        p = o['instances']
        n = len(g['boxes'][i])
        assert len(p) == n > 0
        assert p.image_size == tuple(g['ori_sizes'][i])
        assert torch.equal(p.pred_classes, g['labels'][i])
        assert maxdiff(p.pred_boxes.tensor, g['boxes'][i]) < 1e-3
        assert maxdiff(p.scores, g['scores'][i]) < 1e-5
        assert maxdiff(p.mask_scores, g['mask_scores'][i]) < 1e-5
        assert p.pred_masks.dtype == torch.bool
        assert int((p.pred_masks != unpack(g['masks'][i], (n, *g['ori_sizes'][i]))).sum()) == 0


# --------------------------------------------------------------------------- shapes demo
@pytest.fixture(scope='module')
def shapes_model(d2_shapes):
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_train_step_and_inference(shapes_model):
    model, cfg = shapes_model
    model.train()
    with EventStorage():
        losses = model(first_batch(cfg, train=True, batch_size=2))
    assert set(losses) == {'loss_fcos_cls', 'loss_fcos_loc', 'loss_fcos_ctr', 'loss_mask',
                           'loss_maskiou'}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    heads = model.roi_heads
    assert heads.mask_head.predictor.weight.grad.abs().sum() > 0
    assert heads.maskiou_head.fc_iou.weight.grad.abs().sum() > 0
    assert model.proposal_generator.fcos_head.cls_logits.weight.grad.abs().sum() > 0
    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        assert inst.image_size == (inputs['height'], inputs['width'])
        assert inst.pred_masks.dtype == torch.bool
        assert inst.pred_masks.shape[1:] == inst.image_size
        assert len(inst) <= cfg.MODEL.INSPLUG.FCOS.POST_NMS_TOPK_TEST
        assert {'pred_boxes', 'scores', 'pred_classes', 'mask_scores'} <= set(inst.get_fields())


def test_image_without_instances(shapes_model):
    model, cfg = shapes_model
    model.train()
    batch = first_batch(cfg, train=True, batch_size=1)
    h, w = batch[0]['image'].shape[-2:]
    batch[0]['instances'] = Instances(
        (h, w), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64),
        gt_masks=BitMasks(torch.zeros(0, h, w, dtype=torch.bool)))
    with EventStorage():
        losses = model(batch)
    assert float(losses['loss_mask']) == float(losses['loss_maskiou']) == 0.0
    sum(losses.values()).backward()


# --------------------------------------------------------------------------- mmdet agreement
def mmdet_model(path, full_width_r18=False):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, path))
    if full_width_r18:  # detectron2's ResNet-18 builder only makes the 64-channel res2
        cfg.model.backbone.base_channels = 64
        cfg.model.neck.in_channels = [128, 256, 512]
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


def test_agreement_with_mmdet(d2_shapes):
    pytest.importorskip('mmdet')
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    mm, _ = mmdet_model('configs/demo/centermask_r18_shapes.py', full_width_r18=True)
    d2 = build_model(cfg)
    load_strict(d2, to_detectron2(mm.state_dict()))
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    images = d2.preprocess_image(batch)
    pad = tuple(images.tensor.shape[-2:])

    d2.train()
    mm.train()
    torch.manual_seed(1)
    with EventStorage():
        l_d2 = d2(batch)
    torch.manual_seed(1)
    l_mm = mm.loss(images.tensor, mmdet_samples(batch, pad))
    names = dict(loss_fcos_cls='loss_cls', loss_fcos_loc='loss_bbox',
                 loss_fcos_ctr='loss_centerness', loss_mask='loss_mask',
                 loss_maskiou='loss_maskiou')
    assert set(l_d2) == set(names)
    for a, b in names.items():
        assert abs(float(l_d2[a]) - float(l_mm[b])) <= 1e-5 * max(1.0, abs(float(l_mm[b]))), a

    d2.eval()
    mm.eval()
    test = [dict(image=x['image'], height=x['height'], width=x['width']) for x in batch]
    with torch.no_grad():
        out_d2 = d2(test)
        out_mm = mm.predict(images.tensor, mmdet_samples(batch, pad, with_gt=False),
                            rescale=True)
    total = 0
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b)
        total += len(a)
        assert torch.equal(a.pred_classes, b.labels)
        assert maxdiff(a.pred_boxes.tensor, b.bboxes) < 1e-5
        assert maxdiff(a.scores, b.scores) < 1e-5
        assert maxdiff(a.mask_scores, b.mask_scores) < 1e-5
        assert int((a.pred_masks != b.masks).sum()) == 0
    assert total > 0


@pytest.mark.parametrize('yaml,config', [
    ('centermask_v39_3x.yaml', 'configs/centermask/centermask_v39_3x.py'),
])
def test_mmdet_weights_load_strictly_into_the_yaml_model(yaml, config):
    # (the R-50 variant shares everything but the trunk, whose mapping the agreement test and
    # test_lazyconfig_train_step_and_inference exercise; the yaml values are compared below)
    pytest.importorskip('mmdet')
    mm, _ = mmdet_model(config)
    d2 = build_model(yaml_cfg(yaml))
    state = to_detectron2(mm.state_dict())
    load_strict(d2, state)
    ours = d2.state_dict()
    assert all(ours[k].shape == v.shape for k, v in state.items())


# --------------------------------------------------------------------------- configs
def mm_values(path):
    """The CenterMask values of an mmdet config, in one flat dict."""
    from mmengine.config import Config
    c = Config.fromfile(osp.join(REPO, path))
    m = c.model
    h, r, t, p = m.bbox_head, m.roi_head, m.test_cfg, m.train_cfg.proposal
    b = m.backbone
    milestones = [s for s in c.param_scheduler if s.type == 'MultiStepLR'][0].milestones
    warm = [s for s in c.param_scheduler if s.type == 'LinearLR'][0]
    return dict(
        num_classes=h.num_classes, channels=m.neck.out_channels, fpn_levels=m.neck.num_outs,
        strides=list(h.strides), sizes=list(h.sizes_of_interest), fcos_convs=h.stacked_convs,
        gn_groups=h.norm_cfg.num_groups, radius=h.center_sample_radius, use_scale=h.use_scale,
        norm_reg=h.norm_reg_targets, ctr_on_reg=h.centerness_on_reg, loss_type=h.loss_type,
        test=(t.score_thr, t.nms_pre, t.nms.iou_threshold, t.max_per_img, t.thresh_with_ctr,
              t.score),
        train=(p.score_thr, p.nms_pre, p.nms.iou_threshold, p.max_per_img, p.thresh_with_ctr,
               p.score),
        roi_strides=list(r.featmap_strides), roi_size=r.roi_size, mask_dim=r.conv_channels,
        mask_convs=r.num_convs, maskiou=r.maskiou, iou_dim=r.maskiou_conv_channels,
        iou_convs=r.maskiou_num_convs, iou_fc=r.maskiou_fc_channels,
        iou_weight=r.loss_maskiou_weight, pos_iou=r.pos_iou_thr, max_pos=r.max_pos_per_img,
        append_gt=r.append_gt,
        mean=list(m.data_preprocessor.mean), std=list(m.data_preprocessor.std),
        trunk=(b.type, b.get('arch', b.get('depth')), b.frozen_stages + 1
               if b.frozen_stages >= 0 else 0),
        lr=c.optim_wrapper.optimizer.lr, momentum=c.optim_wrapper.optimizer.momentum,
        wd=c.optim_wrapper.optimizer.weight_decay,
        max_iter=c.train_cfg.max_iters, steps=list(milestones),
        warmup=(warm.end, warm.start_factor))


def yaml_values(name):
    y = yaml_cfg(name)
    m, f, c = y.MODEL, y.MODEL.INSPLUG.FCOS, y.MODEL.INSPLUG.CENTERMASK
    vov = m.BACKBONE.NAME == 'build_insplug_fcos_vovnet_fpn_backbone'
    from insplug.detectron2.vovnet import arch_of_conv_body
    return dict(
        num_classes=m.ROI_HEADS.NUM_CLASSES, channels=m.FPN.OUT_CHANNELS,
        fpn_levels=len(m.FPN.IN_FEATURES) + f.TOP_LEVELS, strides=list(f.FPN_STRIDES),
        sizes=list(f.SIZES_OF_INTEREST), fcos_convs=f.NUM_CLS_CONVS, gn_groups=f.NORM_GROUPS,
        radius=f.POS_RADIUS, use_scale=f.USE_SCALE, norm_reg=f.NORM_REG_TARGETS,
        ctr_on_reg=f.CENTERNESS_ON_REG, loss_type=f.LOC_LOSS_TYPE,
        test=(f.INFERENCE_TH_TEST, f.PRE_NMS_TOPK_TEST, f.NMS_TH, f.POST_NMS_TOPK_TEST,
              f.THRESH_WITH_CTR, f.SCORE),
        train=(f.INFERENCE_TH_TRAIN, f.PRE_NMS_TOPK_TRAIN, f.NMS_TH, f.POST_NMS_TOPK_TRAIN,
               f.THRESH_WITH_CTR, f.SCORE),
        roi_strides=[8, 16, 32], roi_size=m.ROI_MASK_HEAD.POOLER_RESOLUTION,
        mask_dim=m.ROI_MASK_HEAD.CONV_DIM, mask_convs=m.ROI_MASK_HEAD.NUM_CONV,
        maskiou=c.MASKIOU_ON, iou_dim=c.MASKIOU_CONV_DIM, iou_convs=c.MASKIOU_NUM_CONV,
        iou_fc=c.MASKIOU_FC_DIM, iou_weight=c.MASKIOU_LOSS_WEIGHT,
        pos_iou=m.ROI_HEADS.IOU_THRESHOLDS[0],
        max_pos=int(m.ROI_HEADS.BATCH_SIZE_PER_IMAGE * m.ROI_HEADS.POSITIVE_FRACTION),
        append_gt=m.ROI_HEADS.PROPOSAL_APPEND_GT, mean=list(m.PIXEL_MEAN), std=list(m.PIXEL_STD),
        trunk=(('VoVNetV2', arch_of_conv_body(m.INSPLUG.VOVNET.CONV_BODY), m.BACKBONE.FREEZE_AT)
               if vov else ('mmdet.ResNet', m.RESNETS.DEPTH, m.BACKBONE.FREEZE_AT)),
        lr=y.SOLVER.BASE_LR, momentum=y.SOLVER.MOMENTUM, wd=y.SOLVER.WEIGHT_DECAY,
        max_iter=y.SOLVER.MAX_ITER, steps=list(y.SOLVER.STEPS),
        warmup=(y.SOLVER.WARMUP_ITERS, y.SOLVER.WARMUP_FACTOR))


def lazy_values(name):
    from detectron2.config import LazyConfig
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, name))
    m = cfg.model
    fc, h, r = m.proposal_generator, m.proposal_generator.head, m.roi_heads
    bu = m.backbone.bottom_up
    t, p = fc.test_opts, fc.train_opts
    sched = cfg.lr_multiplier
    vov = 'arch' in bu
    return dict(
        num_classes=fc.num_classes, channels=m.backbone.out_channels,
        fpn_levels=len(m.backbone.in_features) + 2, strides=list(fc.strides),
        sizes=list(fc.sizes_of_interest), fcos_convs=h.num_cls_convs, gn_groups=h.norm_groups,
        radius=fc.center_sample_radius, use_scale=h.use_scale, norm_reg=h.norm_reg_targets,
        ctr_on_reg=h.centerness_on_reg, loss_type=fc.loss_opts.loss_type,
        test=(t.score_thr, t.nms_pre, t.nms_thr, t.max_per_img, t.thresh_with_ctr, t.score),
        train=(p.score_thr, p.nms_pre, p.nms_thr, p.max_per_img, p.thresh_with_ctr, p.score),
        roi_strides=list(r.strides), roi_size=r.pooler_resolution,
        mask_dim=r.mask_head.conv_channels, mask_convs=r.mask_head.num_convs,
        maskiou=r.maskiou_head is not None, iou_dim=r.maskiou_head.conv_channels,
        iou_convs=r.maskiou_head.num_convs, iou_fc=r.maskiou_head.fc_channels,
        iou_weight=r.maskiou_loss_weight, pos_iou=r.pos_iou_thr, max_pos=r.max_pos_per_img,
        append_gt=r.append_gt, mean=list(m.pixel_mean), std=list(m.pixel_std),
        trunk=(('VoVNetV2', bu.arch, bu.freeze_at) if vov else
               ('mmdet.ResNet', bu.stages.depth, bu.freeze_at)),
        lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum, wd=cfg.optimizer.weight_decay,
        max_iter=cfg.train.max_iter, steps=list(sched.scheduler.milestones[:-1]),
        warmup=(round(sched.warmup_length * cfg.train.max_iter), sched.warmup_factor))


@pytest.mark.parametrize('name,config', [
    ('centermask_r50_3x', 'configs/centermask/centermask_r50_3x.py'),
    ('centermask_v39_3x', 'configs/centermask/centermask_v39_3x.py'),
    ('centermask_lite_v19_4x', 'configs/centermask/centermask_lite_v19_4x.py'),
])
def test_yaml_and_lazyconfig_equal_the_mmdet_config(name, config):
    pytest.importorskip('mmdet')
    ref = mm_values(config)
    assert yaml_values(name + '.yaml') == ref
    if osp.exists(osp.join(D2_CONFIGS, name + '.py')):
        assert lazy_values(name + '.py') == ref


def test_shapes_yaml_equals_the_mmdet_demo():
    """The shapes yaml matches configs/demo/centermask_r18_shapes.py except the trunk width
    (detectron2's ResNet-18 builder makes only the 64-channel res2) and the schedule."""
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    c = Config.fromfile(osp.join(REPO, 'configs/demo/centermask_r18_shapes.py'))
    y = yaml_cfg(SHAPES)
    m, f = c.model, y.MODEL.INSPLUG.FCOS
    h = m.bbox_head
    ranges = [(-1, 32), (32, 64), (64, 128), (128, 1e8)]
    assert [tuple(r) for r in h.regress_ranges] == ranges
    assert list(f.SIZES_OF_INTEREST) == [r[1] for r in ranges[:-1]]
    assert (f.NUM_CLASSES, y.MODEL.ROI_HEADS.NUM_CLASSES) == (h.num_classes,) * 2
    assert list(f.FPN_STRIDES) == list(h.strides)
    assert (f.NUM_CLS_CONVS, f.NORM_GROUPS) == (h.stacked_convs, h.norm_cfg.num_groups)
    assert y.MODEL.FPN.OUT_CHANNELS == m.neck.out_channels
    assert len(y.MODEL.FPN.IN_FEATURES) + f.TOP_LEVELS == m.neck.num_outs
    assert (f.PRE_NMS_TOPK_TRAIN, f.POST_NMS_TOPK_TRAIN) == \
        (m.train_cfg.proposal.nms_pre, m.train_cfg.proposal.max_per_img)
    assert (f.PRE_NMS_TOPK_TEST, f.POST_NMS_TOPK_TEST) == \
        (m.test_cfg.nms_pre, m.test_cfg.max_per_img)
    r = m.roi_head
    assert (y.MODEL.ROI_MASK_HEAD.CONV_DIM, y.MODEL.ROI_MASK_HEAD.NUM_CONV) == \
        (r.conv_channels, r.num_convs)
    assert y.MODEL.INSPLUG.CENTERMASK.MASKIOU_CONV_DIM == r.maskiou_conv_channels
    assert int(y.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE * y.MODEL.ROI_HEADS.POSITIVE_FRACTION) \
        == r.max_pos_per_img
    assert list(y.MODEL.PIXEL_MEAN) == list(m.data_preprocessor.mean)
    assert list(y.MODEL.PIXEL_STD) == list(m.data_preprocessor.std)
    assert y.SOLVER.BASE_LR == c.optim_wrapper.optimizer.lr


def test_yacs_defaults_are_the_core_defaults():
    from insplug.core.centermask.heads import MaskIoUHead
    from insplug.core.centermask.roi_head import centermask_roi_losses
    from insplug.detectron2.config import signature_defaults
    y = add_insplug_config(get_cfg()).MODEL.INSPLUG
    iou = signature_defaults(MaskIoUHead)
    assert (y.CENTERMASK.MASKIOU_CONV_DIM, y.CENTERMASK.MASKIOU_NUM_CONV,
            y.CENTERMASK.MASKIOU_FC_DIM) == (iou['conv_channels'], iou['num_convs'],
                                             iou['fc_channels']) == (256, 4, 1024)
    assert y.CENTERMASK.MASKIOU_LOSS_WEIGHT == \
        signature_defaults(centermask_roi_losses)['loss_maskiou_weight'] == 1.0
    assert (y.VOVNET.CONV_BODY, y.VOVNET.NORM) == ('V-39-eSE', 'FrozenBN')


# --------------------------------------------------------------------------- LazyConfig
def test_lazyconfig_v39_builds_the_vovnet_model():
    from detectron2.config import LazyConfig, instantiate
    from insplug.detectron2.vovnet import InsplugVoVNet
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, 'centermask_v39_3x.py'))
    model = instantiate(cfg.model)
    assert isinstance(model.backbone.bottom_up, InsplugVoVNet)
    assert sorted(model.backbone.output_shape()) == ['p3', 'p4', 'p5', 'p6', 'p7']


@pytest.mark.parametrize('name', ['centermask_r50_3x.py'])
def test_lazyconfig_train_step_and_inference(name, d2_shapes):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.evaluation import COCOEvaluator
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, name))
    cfg = LazyConfig.apply_overrides(cfg, [
        f'dataloader.train.dataset.names={d2_shapes["train"]}',
        f'dataloader.test.dataset.names={d2_shapes["val"]}',
        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
        'dataloader.test.num_workers=0', 'train.device=cpu',
        'dataloader.train.mapper.instance_mask_format=bitmask',
        'model.proposal_generator.num_classes=5', 'model.proposal_generator.head.num_classes=5',
        'model.roi_heads.mask_head.num_classes=5', 'model.roi_heads.maskiou_head.num_classes=5'])
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = (128,)
    cfg.dataloader.train.mapper.augmentations[0].max_size = 128
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = 128
    cfg.dataloader.test.mapper.augmentations[0].max_size = 128
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(0):
        losses = model(batch)
    assert {'loss_fcos_cls', 'loss_mask', 'loss_maskiou'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    model.eval()
    test = next(iter(instantiate(cfg.dataloader.test)))
    with torch.no_grad():
        out = model(test)[0]['instances']
    assert out.image_size == (test[0]['height'], test[0]['width'])
    assert out.pred_masks.shape[-2:] == out.image_size and out.pred_masks.dtype == torch.bool
    assert isinstance(instantiate(cfg.dataloader.evaluator), COCOEvaluator)


# --------------------------------------------------------------------------- VoVNet trunk
def test_official_vovnet_fpn_in_detectron2(monkeypatch):
    """centermask2's VoVNet-eSE + FPN (golden, float64): the official trunk/FPN keys through
    ``official_to_detectron2`` load strictly into ``build_insplug_fcos_vovnet_fpn_backbone`` and
    give the release's stage outputs and P3-P7 (abs 1e-9); the ImageNet-trunk route
    (``vovnet_imagenet`` + its ``to_detectron2``) fills the same trunk."""
    from detectron2.layers import ShapeSpec
    from insplug.converters.vovnet_imagenet import convert_vovnet_imagenet
    from insplug.converters.vovnet_imagenet import to_detectron2 as vovnet_to_d2
    from insplug.core.backbones import vovnet
    from insplug.detectron2.vovnet import build_insplug_fcos_vovnet_fpn_backbone
    g = torch.load(FIXTURE, weights_only=True)['backbones']['vovnet']
    s = g['spec']
    monkeypatch.setitem(vovnet.ARCH_SPECS, 'golden', dict(
        stem=s['stem'], stage_ch=s['stage_conv_ch'], out_ch=s['stage_out_ch'],
        layers=s['layer_per_block'], blocks=s['block_per_stage']))
    cfg = yaml_cfg('centermask_v39_3x.yaml', 'MODEL.INSPLUG.VOVNET.CONV_BODY', 'golden',
                   'MODEL.FPN.OUT_CHANNELS', 8)
    backbone = build_insplug_fcos_vovnet_fpn_backbone(cfg, ShapeSpec(channels=3)).double()
    state = official_to_detectron2(g['state_dict'])
    load_strict(backbone, {k[len('backbone.'):]: v for k, v in state.items()})
    backbone.eval()
    with torch.no_grad():
        stages = backbone.bottom_up(g['input'])
        pyramid = backbone(g['input'])
    for name, ref in zip(('stage3', 'stage4', 'stage5'), g['stages']):
        assert stages[name].shape == ref.shape and maxdiff(stages[name], ref) < 1e-9
    for name, ref in zip(('p3', 'p4', 'p5', 'p6', 'p7'), g['pyramid']):
        assert pyramid[name].shape == ref.shape and maxdiff(pyramid[name], ref) < 1e-9
    # ImageNet trunk (no prefix) -> the detectron2 trunk keys
    trunk = {k[len('backbone.bottom_up.'):]: v for k, v in g['state_dict'].items()
             if k.startswith('backbone.bottom_up.')}
    d2_trunk = vovnet_to_d2(convert_vovnet_imagenet(trunk))
    assert d2_trunk.keys() == {k for k in state if k.startswith('backbone.bottom_up.')}
    assert all(torch.equal(d2_trunk[k], state[k]) for k in d2_trunk)
