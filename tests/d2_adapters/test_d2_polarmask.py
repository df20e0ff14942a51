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

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

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


def mmdet_samples(batch, pad_shape, with_gt=True):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    samples = []
    for item in batch:
        h, w = item['image'].shape[-2:]
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=pad_shape,
                                        batch_input_shape=pad_shape, scale_factor=(1.0, 1.0)))
        if with_gt:
            gt = item['instances']
            s.gt_instances = InstanceData(
                labels=gt.gt_classes, bboxes=gt.gt_boxes.tensor,
                masks=BitmapMasks(gt.gt_masks.tensor.numpy().astype(np.uint8), h, w))
        samples.append(s)
    return samples


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
