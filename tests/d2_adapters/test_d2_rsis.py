"""RSIS and RIS through detectron2 (``InsplugRSIS``, ``InsplugRIS``): agreement with the mmdet
adapters (``configs/demo/rsis_r18_shapes.py``, ``configs/demo/ris_r18_shapes.py`` with a
full-width ResNet-18, which detectron2's builder requires). The mmdet model's random weights go
through ``to_detectron2`` / ``ris_to_detectron2`` and load strictly; on the same normalised batch
the raw decoder outputs (1e-5), the losses (1e-5) and the predictions (scores 1e-5, labels,
boxes, masks 0 differing pixels) agree. Plus one training step of each shapes yaml.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from insplug.converters.rsis import ris_to_detectron2, to_detectron2  # noqa: E402
from insplug.core.ris import ris_decode  # noqa: E402
from insplug.core.rsis import rsis_decode  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.rsis import InsplugRIS, InsplugRSIS  # noqa: E402
from insplug.registry import MODELS  # noqa: E402

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def yaml_cfg(name, *opts):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, name))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    return cfg


def mm_model(name, **head):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', name))
    cfg.model.backbone.base_channels = 64
    cfg.model.head.update(head)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model)


def load_strict(module, state):
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing


def synthetic_batch(size=64, seed=0):
    """Two images (raw 0-255 RGB) with rectangles of 2 and 3 instances."""
    g = torch.Generator().manual_seed(seed)
    images, masks, labels = [], [], []
    for n in (2, 3):
        images.append(torch.rand(3, size, size, generator=g) * 255)
        m = torch.zeros(n, size, size, dtype=torch.bool)
        for i in range(n):
            y, x = torch.randint(0, size - 20, (2,), generator=g).tolist()
            h, w = torch.randint(8, 20, (2,), generator=g).tolist()
            m[i, y:y + h, x:x + w] = True
        masks.append(m)
        labels.append(torch.randint(0, 5, (n,), generator=g))
    return images, masks, labels


def d2_inputs(images, masks, labels, train):
    out = []
    for img, m, lab in zip(images, masks, labels):
        h, w = img.shape[-2:]
        d = dict(image=img, height=h, width=w)
        if train:
            d['instances'] = Instances((h, w), gt_boxes=Boxes(torch.zeros(len(m), 4)),
                                       gt_classes=lab, gt_masks=BitMasks(m))
        out.append(d)
    return out


def mm_samples(images, masks, labels):
    samples = []
    for img, m, lab in zip(images, masks, labels):
        h, w = img.shape[-2:]
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                        batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(masks=BitmapMasks(m.numpy(), h, w), labels=lab,
                                      bboxes=torch.zeros(len(m), 4))
        samples.append(s)
    return samples


def compare_predictions(mm_res, d2_res):
    for a, b in zip(mm_res, d2_res):
        b = b['instances']
        assert len(a.scores) == len(b)
        assert (a.scores - b.scores).abs().max() < 1e-5 if len(b) else True
        assert torch.equal(a.labels, b.pred_classes)
        assert int((a.masks != b.pred_masks).sum()) == 0
        assert torch.equal(a.bboxes, b.pred_boxes.tensor)


def test_registered_names():
    assert META_ARCH_REGISTRY.get('InsplugRSIS') is InsplugRSIS
    assert META_ARCH_REGISTRY.get('InsplugRIS') is InsplugRIS


def test_rsis_agreement():
    torch.manual_seed(0)
    mm = mm_model('rsis_r18_shapes.py', in_channels=(512, 256, 128, 64, 64))
    d2 = build_model(yaml_cfg('rsis_r18_shapes.yaml'))
    load_strict(d2, to_detectron2(mm.state_dict()))
    images, masks, labels = synthetic_batch()
    x = torch.stack([(i - MEAN) / STD for i in images])
    # raw outputs (eval mode)
    mm.eval()
    d2.eval()
    with torch.no_grad():
        feats = mm.extract_feat(x)
        ref = rsis_decode(mm.head.decoder, mm.head.skips(feats), 4, (64, 64))
        d2f = d2.backbone(x)
        out = rsis_decode(d2.decoder, d2.skips([d2f[f] for f in d2.in_features]), 4, (64, 64))
    for a, b in zip(ref, out):
        assert (a - b).abs().max() < 1e-5
    # predictions
    with torch.no_grad():
        mm_res = mm.head.predict(feats, mm_samples(images, masks, labels))
        d2_res = d2(d2_inputs(images, masks, labels, train=False))
    compare_predictions(mm_res, d2_res)
    # losses (train mode, both from the same state)
    mm.train()
    d2.train()
    mm_losses = mm.head.loss(mm.extract_feat(x), mm_samples(images, masks, labels))
    d2_losses = d2(d2_inputs(images, masks, labels, train=True))
    assert set(mm_losses) == set(d2_losses) == {'loss_mask', 'loss_cls', 'loss_stop'}
    for k in mm_losses:
        assert abs(float(mm_losses[k]) - float(d2_losses[k])) < 1e-5, k


def test_ris_agreement():
    torch.manual_seed(0)
    mm = mm_model('ris_r18_shapes.py', in_channels=64)
    d2 = build_model(yaml_cfg('ris_r18_shapes.yaml'))
    d2_state = d2.state_dict()
    mapped = {k: v for k, v in ris_to_detectron2(mm.state_dict()).items() if k in d2_state}
    assert all(k.startswith('backbone.res') for k in ris_to_detectron2(mm.state_dict())
               if k not in d2_state)  # the stages after res2 detectron2 prunes
    load_strict(d2, mapped)
    images, masks, labels = synthetic_batch()
    x = torch.stack([(i - MEAN) / STD for i in images])
    mm.eval()
    d2.eval()
    with torch.no_grad():
        feats = mm.extract_feat(x)
        ref = ris_decode(mm.head.net, feats[-1], 5)
        out = ris_decode(d2.net, d2.backbone(x)['res2'], 5)
    for a, b in zip(ref, out):
        assert (a - b).abs().max() < 1e-5
    with torch.no_grad():
        mm_res = mm.head.predict(feats, mm_samples(images, masks, labels))
        d2_res = d2(d2_inputs(images, masks, labels, train=False))
    compare_predictions(mm_res, d2_res)
    mm.train()
    d2.train()
    a = mm.head.loss(mm.extract_feat(x), mm_samples(images, masks, labels))['loss_ris']
    b = d2(d2_inputs(images, masks, labels, train=True))['loss_ris']
    assert abs(float(a) - float(b)) < 1e-5
    # the curriculum's step limit (mmdet: RISCurriculumHook) at 2 steps
    mm.head.train_steps_limit = d2.train_steps_limit = 2
    c = mm.head.loss(mm.extract_feat(x), mm_samples(images, masks, labels))['loss_ris']
    d = d2(d2_inputs(images, masks, labels, train=True))['loss_ris']
    assert abs(float(c) - float(d)) < 1e-5 and abs(float(c) - float(a)) > 1e-4


@pytest.mark.parametrize('name,losses,opts', [
    ('rsis_r18_shapes.yaml', {'loss_mask', 'loss_cls', 'loss_stop'}, []),
    # first_batch maps without resizing: 256 px images, a 64 x 64 res2 grid
    ('ris_r18_shapes.yaml', {'loss_ris'}, ['MODEL.INSPLUG.RIS.FEAT_SIZE', [64, 64]])])
def test_shapes_yaml_train_step(d2_shapes, name, losses, opts):
    cfg = d2_cfg(name, d2_shapes, *opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    out = model(first_batch(cfg, train=True, batch_size=2))
    assert set(out) == losses
    assert all(torch.isfinite(v) for v in out.values())
    sum(out.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        res = model(first_batch(cfg, train=False, batch_size=1))
    inst = res[0]['instances']
    assert inst.pred_masks.dtype == torch.bool


def test_full_voc_yaml_loads_converted_weights():
    """The VOC yaml builds InsplugRSIS with ResNet-101, and the mmdet VOC model's weights
    (``to_detectron2``) fill it exactly."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'rsis', 'rsis_r101_voc.py'))
    cfg.model.backbone.pop('init_cfg')
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(cfg.model)
    d2 = build_model(yaml_cfg('rsis_r101_voc.yaml'))
    state = {k: v for k, v in to_detectron2(mm.state_dict()).items()}
    load_strict(d2, state)
    assert d2.num_classes == 20 and d2.max_steps == 10
