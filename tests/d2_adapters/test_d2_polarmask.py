"""PolarMask through detectron2: the ``InsplugPolarMask`` meta-architecture.

* official golden (``tests/fixtures/official/polarmask/golden.pt``, the release's head at small
  widths, mmdet 1.0): its weights go through ``official_to_detectron2`` (= ``to_detectron2`` of
  the ``polarmask`` converter's output, rays permuted to insplug's order) and load strictly into
  the head of the model built from ``configs/detectron2/polarmask_r50_1x.yaml``; on the recorded
  FPN features the raw outputs (rel 1e-5), the four losses (rel 1e-5) and the post-processed
  detections (labels, scores rel 1e-5, boxes 1e-4 px, masks 0 differing pixels) equal the
  release's;
* the shapes demo yaml trains one step (four finite losses, gradients reach every tower) and
  predicts image-sized boolean masks;
* agreement with the mmdet adapter (``configs/demo/polarmask_r18_shapes.py``): its weights go
  through ``to_detectron2`` and load strictly; the same batch gives the same losses (1e-5) and
  detections (boxes, scores 1e-5, masks 0 differing pixels);
* ``to_detectron2`` of the full-size mmdet config's random weights loads strictly into the
  model of the yaml.
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
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, ImageList, Instances  # noqa: E402

from insplug.converters.polarmask import official_to_detectron2, to_detectron2  # noqa: E402
from insplug.core.fcos import fcos_locations  # noqa: E402
from insplug.core.polarmask.targets import official_ray_order  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.polarmask import InsplugPolarMask  # noqa: E402

FIXTURE = osp.join(REPO, 'tests', 'fixtures', 'official', 'polarmask', 'golden.pt')
SHAPES = 'polarmask_r18_shapes.yaml'
LOSSES = {'loss_cls', 'loss_bbox', 'loss_mask', 'loss_centerness'}


def yaml_cfg(name, *opts):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, name))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    return cfg


def load_strict(module, state):
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_registered_name():
    assert META_ARCH_REGISTRY.get('InsplugPolarMask') is InsplugPolarMask


# --------------------------------------------------------------------------- official golden
@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope='module')
def golden_model(golden):
    c = golden['config']
    t = c['test_cfg']
    model = build_model(yaml_cfg(
        'polarmask_r50_1x.yaml', 'MODEL.RESNETS.DEPTH', 18, 'MODEL.RESNETS.RES2_OUT_CHANNELS', 64,
        'MODEL.FPN.OUT_CHANNELS', c['channels'], 'MODEL.INSPLUG.POLARMASK.NUM_CLASSES',
        c['num_classes'], 'MODEL.INSPLUG.POLARMASK.NORM_GROUPS', c['gn_groups'],
        'MODEL.INSPLUG.POLARMASK.NUM_CONVS', c['stacked_convs'],
        'MODEL.INSPLUG.POLARMASK.PRE_NMS_TOPK_TEST', t['nms_pre'],
        'MODEL.INSPLUG.POLARMASK.INFERENCE_TH_TEST', t['score_thr'],
        'MODEL.INSPLUG.POLARMASK.NMS_TH', t['iou_threshold'],
        'MODEL.INSPLUG.POLARMASK.POST_NMS_TOPK_TEST', t['max_per_img']))
    state = official_to_detectron2(golden['state_dict'])
    assert all(k.startswith('head.') for k in state)
    load_strict(model.head, {k[len('head.'):]: v for k, v in state.items()})
    return model.eval()


def golden_points(golden, model):
    c = golden['config']
    return fcos_locations([(c['H'] // s, c['W'] // s) for s in c['strides']], model.strides)


def test_official_golden_forward(golden, golden_model):
    order = official_ray_order(36)
    with torch.no_grad():
        outs = golden_model.head(golden['feats'])
    f = golden['forward']
    for level in range(len(outs[0])):
        assert rel(outs[0][level], f['cls'][level]) < 1e-5
        assert rel(outs[1][level], f['bbox'][level]) < 1e-5
        assert rel(outs[2][level], f['ctr'][level]) < 1e-5
        assert rel(outs[3][level], f['rays'][level][:, order]) < 1e-5


def official_outs(golden):
    f = golden['forward']
    order = official_ray_order(36)
    return f['cls'], f['bbox'], f['ctr'], [r[:, order] for r in f['rays']]


def test_official_golden_losses(golden, golden_model):
    gts = []
    for g in golden['gt']:
        h, w = g['masks'].shape[-2:]
        gts.append(Instances((h, w), gt_boxes=Boxes(g['bboxes'].float()),
                             gt_classes=g['labels'].long(),
                             gt_masks=BitMasks(g['masks'].bool())))
    losses = golden_model.losses(official_outs(golden), golden_points(golden, golden_model), gts)
    assert set(losses) == LOSSES == set(golden['losses'])
    for name, ref in golden['losses'].items():
        assert abs(float(losses[name]) - ref) <= 1e-5 * abs(ref), (name, float(losses[name]), ref)


def test_official_golden_predictions(golden, golden_model):
    c = golden['config']
    ori = tuple(c['ori'])
    images = ImageList(torch.zeros(2, 3, c['H'], c['W']), [(c['H'], c['W'])] * 2)
    with torch.no_grad():
        out = golden_model.inference(official_outs(golden), golden_points(golden, golden_model),
                                     [dict(height=ori[0], width=ori[1])] * 2, images)
    for res, ref in zip(out, golden['preds']):
        res = res['instances']
        assert res.image_size == ori
        assert len(res) == ref['num'] > 0
        key_ins = sorted(range(len(res)),
                         key=lambda i: (int(res.pred_classes[i]), -float(res.scores[i])))
        key_ref = sorted(range(ref['num']),
                         key=lambda i: (int(ref['labels'][i]), -float(ref['boxes'][i, 4])))
        ins, off = torch.tensor(key_ins), torch.tensor(key_ref)
        assert torch.equal(res.pred_classes[ins], ref['labels'][off])
        assert rel(res.scores[ins], ref['boxes'][off, 4]) < 1e-5
        assert float((res.pred_boxes.tensor[ins] - ref['boxes'][off, :4]).abs().max()) < 1e-4
        n = ref['num'] * ori[0] * ori[1]
        masks = torch.from_numpy(np.unpackbits(ref['masks_packed'].numpy())[:n]
                                 .reshape(ref['num'], *ori).astype(bool))
        assert res.pred_masks.dtype == torch.bool
        assert int((res.pred_masks[ins] != masks[off]).sum()) == 0


# --------------------------------------------------------------------------- shapes demo
@pytest.fixture(scope='module')
def shapes_model(d2_shapes):
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_train_step_and_inference(shapes_model):
    model, cfg = shapes_model
    model.train()
    losses = model(first_batch(cfg, train=True, batch_size=2))
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    for name in ('conv_cls', 'conv_reg', 'conv_centerness', 'conv_rays'):
        assert getattr(model.head, name).weight.grad.abs().sum() > 0, name
    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    thr = model.test_opts['score_thr']
    model.test_opts['score_thr'] = 0.0  # an untrained head scores ~prior 0.01 * (ctr + 0.5)
    try:
        with torch.no_grad():
            outputs = model(images)
    finally:
        model.test_opts['score_thr'] = thr
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        assert inst.image_size == (inputs['height'], inputs['width'])
        assert inst.pred_masks.dtype == torch.bool
        assert inst.pred_masks.shape[1:] == inst.image_size
        assert 0 < len(inst) <= cfg.MODEL.INSPLUG.POLARMASK.POST_NMS_TOPK_TEST
        assert {'pred_boxes', 'scores', 'pred_classes'} <= set(inst.get_fields())


def test_image_without_instances(shapes_model):
    model, cfg = shapes_model
    model.train()
    batch = first_batch(cfg, train=True, batch_size=1)
    h, w = batch[0]['image'].shape[-2:]
    batch[0]['instances'] = Instances(
        (h, w), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64),
        gt_masks=BitMasks(torch.zeros(0, h, w, dtype=torch.bool)))
    losses = model(batch)
    assert float(losses['loss_cls']) > 0
    assert float(losses['loss_mask']) == float(losses['loss_bbox']) == 0.0
    sum(losses.values()).backward()


# --------------------------------------------------------------------------- mmdet agreement
def mmdet_model(path, full_width_r18=False):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, path))
    if full_width_r18:  # detectron2's ResNet-18 builder only makes the 64-channel res2
        cfg.model.backbone.base_channels = 64
        cfg.model.neck.in_channels = [64, 128, 256, 512]
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model)


def test_agreement_with_mmdet(d2_shapes):
    pytest.importorskip('mmdet')
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    mm = mmdet_model('configs/demo/polarmask_r18_shapes.py', full_width_r18=True)
    d2 = build_model(cfg)
    load_strict(d2, to_detectron2(mm.state_dict()))
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    images = d2.preprocess_image(batch)
    pad = tuple(images.tensor.shape[-2:])
    d2.train()
    mm.train()
    l_d2 = d2(batch)
    l_mm = mm.loss(images.tensor, mmdet_samples(batch, pad))
    assert set(l_d2) == set(l_mm) == LOSSES
    for k in LOSSES:
        assert abs(float(l_d2[k]) - float(l_mm[k])) <= 1e-5 * max(1.0, abs(float(l_mm[k]))), k
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
        assert float((a.pred_boxes.tensor - b.bboxes).abs().max()) < 1e-5
        assert float((a.scores - b.scores).abs().max()) < 1e-5
        assert int((a.pred_masks != b.masks).sum()) == 0
    assert total > 0


def test_mmdet_weights_load_strictly_into_the_yaml_model():
    pytest.importorskip('mmdet')
    mm = mmdet_model('configs/polarmask/polarmask_r50_1x.py')
    d2 = build_model(yaml_cfg('polarmask_r50_1x.yaml'))
    state = to_detectron2(mm.state_dict())
    load_strict(d2, state)
    ours = d2.state_dict()
    assert all(ours[k].shape == v.shape for k, v in state.items())


# --------------------------------------------------------------------------- configs
def mm_values(path):
    from mmengine.config import Config
    c = Config.fromfile(osp.join(REPO, path))
    m = c.model
    h, t, b = m.bbox_head, m.test_cfg, m.backbone
    o = c.optim_wrapper
    return dict(
        num_classes=h.num_classes, channels=m.neck.out_channels, fpn_levels=m.neck.num_outs,
        strides=list(h.strides), ranges=[tuple(map(float, r)) for r in h.regress_ranges],
        convs=h.stacked_convs, gn_groups=h.norm_cfg.num_groups, rays=h.num_rays,
        radius=h.radius, box_offset=h.box_offset, centerness_bias=h.centerness_bias,
        focal=(h.loss_cls.alpha, h.loss_cls.gamma),
        weights=(h.loss_cls.loss_weight, h.loss_bbox.loss_weight, h.loss_mask.loss_weight,
                 h.loss_centerness.loss_weight),
        test=(t.nms_pre, t.score_thr, t.nms.iou_threshold, t.max_per_img),
        mean=list(m.data_preprocessor.mean), std=list(m.data_preprocessor.std),
        trunk=(b.depth, b.frozen_stages + 1, b.style == 'caffe'),
        sgd=(o.optimizer.lr, o.optimizer.momentum, o.optimizer.weight_decay,
             o.paramwise_cfg.bias_lr_mult, o.paramwise_cfg.bias_decay_mult * 0.0),
        clip=o.clip_grad.max_norm)


def ranges_of(sizes):
    from insplug.core.fcos import regress_ranges_from_sizes
    return [tuple(map(float, r)) for r in regress_ranges_from_sizes(sizes)]


def yaml_values(name):
    y = yaml_cfg(name)
    m, p = y.MODEL, y.MODEL.INSPLUG.POLARMASK
    s = y.SOLVER
    return dict(
        num_classes=p.NUM_CLASSES, channels=m.FPN.OUT_CHANNELS,
        fpn_levels=len(m.FPN.IN_FEATURES) + m.INSPLUG.FCOS.TOP_LEVELS,
        strides=list(p.FPN_STRIDES), ranges=ranges_of(p.SIZES_OF_INTEREST), convs=p.NUM_CONVS,
        gn_groups=p.NORM_GROUPS, rays=p.NUM_RAYS, radius=p.POS_RADIUS, box_offset=p.BOX_OFFSET,
        centerness_bias=p.CENTERNESS_BIAS, focal=(p.LOSS_ALPHA, p.LOSS_GAMMA),
        weights=(p.LOSS_WEIGHT_CLS, p.LOSS_WEIGHT_BBOX, p.LOSS_WEIGHT_MASK,
                 p.LOSS_WEIGHT_CENTERNESS),
        test=(p.PRE_NMS_TOPK_TEST, p.INFERENCE_TH_TEST, p.NMS_TH, p.POST_NMS_TOPK_TEST),
        mean=list(m.PIXEL_MEAN), std=list(m.PIXEL_STD),
        trunk=(m.RESNETS.DEPTH, m.BACKBONE.FREEZE_AT, m.RESNETS.STRIDE_IN_1X1),
        sgd=(s.BASE_LR, s.MOMENTUM, s.WEIGHT_DECAY, s.BIAS_LR_FACTOR, s.WEIGHT_DECAY_BIAS),
        clip=s.CLIP_GRADIENTS.CLIP_VALUE if s.CLIP_GRADIENTS.ENABLED else None)


def lazy_values(name):
    from detectron2.config import LazyConfig
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, name))
    m, h = cfg.model, cfg.model.head
    t, lo = m.test_opts, m.loss_opts
    bu = m.backbone.bottom_up
    o = cfg.optimizer
    return dict(
        num_classes=h.num_classes, channels=m.backbone.out_channels,
        fpn_levels=len(m.backbone.in_features) + 2, strides=list(m.strides),
        ranges=ranges_of(m.sizes_of_interest), convs=h.num_convs, gn_groups=h.norm_groups,
        rays=h.num_rays, radius=m.radius, box_offset=m.box_offset,
        centerness_bias=t.centerness_bias, focal=(lo.focal_alpha, lo.focal_gamma),
        weights=(lo.loss_weight_cls, lo.loss_weight_bbox, lo.loss_weight_mask,
                 lo.loss_weight_centerness),
        test=(t.nms_pre, t.score_thr, t.iou_thr, t.max_per_img),
        mean=list(m.pixel_mean), std=list(m.pixel_std),
        trunk=(bu.stages.depth, bu.freeze_at, bu.stages.stride_in_1x1),
        sgd=(o.lr, o.momentum, o.weight_decay, o.params.bias_lr_factor,
             o.params.weight_decay_bias),
        clip=o.clip_max_norm)


def test_yaml_and_lazyconfig_equal_the_mmdet_config():
    pytest.importorskip('mmdet')
    ref = mm_values('configs/polarmask/polarmask_r50_1x.py')
    assert yaml_values('polarmask_r50_1x.yaml') == ref
    assert lazy_values('polarmask_r50_1x.py') == ref


def test_shapes_yaml_equals_the_mmdet_demo():
    """Except the trunk (detectron2's ResNet-18 builder makes only the 64-channel res2, the
    mmdet demo has base_channels 32) and the schedule."""
    pytest.importorskip('mmdet')
    ref = mm_values('configs/demo/polarmask_r18_shapes.py')
    ours = yaml_values(SHAPES)
    for key in ('trunk', 'sgd'):
        ref.pop(key), ours.pop(key)
    assert ours == ref


def test_yacs_defaults_are_the_core_defaults():
    from insplug.core.polarmask.inference import polarmask_predict_single
    from insplug.core.polarmask.targets import polar_targets_single
    from insplug.detectron2.config import signature_defaults
    p = add_insplug_config(get_cfg()).MODEL.INSPLUG.POLARMASK
    t = signature_defaults(polar_targets_single)
    s = signature_defaults(polarmask_predict_single)
    assert (p.NUM_RAYS, p.POS_RADIUS, p.BOX_OFFSET) == (t['num_rays'], t['radius'],
                                                        t['box_offset']) == (36, 1.5, 1.0)
    assert (p.PRE_NMS_TOPK_TEST, p.INFERENCE_TH_TEST, p.NMS_TH, p.POST_NMS_TOPK_TEST,
            p.CENTERNESS_BIAS) == (s['nms_pre'], s['score_thr'], s['iou_thr'],
                                   s['max_per_img'], s['centerness_bias']) == \
        (1000, 0.05, 0.5, 100, 0.5)


def test_lazyconfig_train_step_and_inference(d2_shapes):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.evaluation import COCOEvaluator
    from detectron2.utils.events import EventStorage
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, 'polarmask_r50_1x.py'))
    cfg = LazyConfig.apply_overrides(cfg, [
        f'dataloader.train.dataset.names={d2_shapes["train"]}',
        f'dataloader.test.dataset.names={d2_shapes["val"]}',
        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
        'dataloader.test.num_workers=0', 'train.device=cpu', 'model.head.num_classes=5',
        'dataloader.train.mapper.instance_mask_format=bitmask',
        'model.test_opts.score_thr=0.0'])
    cfg.dataloader.train.mapper.augmentations[0].shape = (128, 160)
    cfg.dataloader.test.mapper.augmentations[0].shape = (128, 160)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert batch[0]['image'].shape[-2:] == (128, 160)
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    model.eval()
    test = next(iter(instantiate(cfg.dataloader.test)))
    with torch.no_grad():
        out = model(test)[0]['instances']
    assert out.image_size == (test[0]['height'], test[0]['width'])
    assert len(out) > 0
    assert out.pred_masks.shape[-2:] == out.image_size and out.pred_masks.dtype == torch.bool
    assert isinstance(instantiate(cfg.dataloader.evaluator), COCOEvaluator)
