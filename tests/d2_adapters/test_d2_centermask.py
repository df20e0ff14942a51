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

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

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
    ('centermask_r50_3x.yaml', 'configs/centermask/centermask_r50_3x.py'),
    ('centermask_v39_3x.yaml', 'configs/centermask/centermask_v39_3x.py'),
    ('centermask_lite_v19_4x.yaml', 'configs/centermask/centermask_lite_v19_4x.py'),
])
def test_mmdet_weights_load_strictly_into_the_yaml_model(yaml, config):
    pytest.importorskip('mmdet')
    mm, _ = mmdet_model(config)
    d2 = build_model(yaml_cfg(yaml))
    state = to_detectron2(mm.state_dict())
    load_strict(d2, state)
    ours = d2.state_dict()
    assert all(ours[k].shape == v.shape for k, v in state.items())
