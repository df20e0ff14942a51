"""InstanceFCN through detectron2: the ``InstanceFCN`` meta-architecture.

Agreement with the mmdet adapter (``configs/instancefcn/instancefcn_r18_shapes.py`` vs
``configs/detectron2/instancefcn_r18_shapes.yaml``): detectron2's ResNet cannot be dilated like
the mmdet demo's trunk, so the mmdet model is given the detectron2 model's trunk (the same
module, its ``res3`` as the one output level) and the head weights load strictly (same
``head.*`` keys); with the same RNG seeds (pyramid scale, window sampling) the same batch gives
the same losses and the same proposals (scores, boxes, 0 differing mask pixels). What is
compared is everything the adapters add: normalisation, ground truth conversion, the loss and
the proposal wiring. The classified mode ("segments, then classified":
``instancefcn_cls_r18_shapes.py`` / ``.yaml``) is compared the same way, the segment
classifier's weights loaded strictly too: the same three losses (objectness, segment,
``loss_seg_cls``) and the same class-aware instances (labels, scores, boxes, masks). (No
official code was released: see tests/core/test_instancefcn_core.py.)
"""
import random

import pytest

from d2_utils import INSTALL_HINT, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from torch import nn  # noqa: E402

from insplug.detectron2.instancefcn import InstanceFCN  # noqa: E402
# the mmdet model builder and DetDataSample batch of the PolarMask agreement test
from test_d2_polarmask import mmdet_model, mmdet_samples  # noqa: E402

SHAPES = 'instancefcn_r18_shapes.yaml'
MODES = {
    'proposals': (SHAPES, 'configs/instancefcn/instancefcn_r18_shapes.py',
                  {'loss_objectness', 'loss_segment'}),
    'classified': ('instancefcn_cls_r18_shapes.yaml',
                   'configs/instancefcn/instancefcn_cls_r18_shapes.py',
                   {'loss_objectness', 'loss_segment', 'loss_seg_cls'}),
}


class _Res3(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.body = backbone

    def forward(self, x):
        return (self.body(x)['res3'],)


def test_registered_name():
    assert META_ARCH_REGISTRY.get('InstanceFCN') is InstanceFCN


@pytest.mark.parametrize('mode', sorted(MODES))
def test_agreement_with_mmdet(d2_shapes, mode):
    pytest.importorskip('mmdet')
    yaml, mm_config, loss_keys = MODES[mode]
    cfg = d2_cfg(yaml, d2_shapes)
    torch.manual_seed(0)
    mm = mmdet_model(mm_config)
    d2 = build_model(cfg)
    assert d2.stride == 8 and mm.stride == 8
    mm.backbone = _Res3(d2.backbone)
    missing, unexpected = mm.head.load_state_dict(d2.head.state_dict(), strict=True)
    assert not missing and not unexpected
    if mode == 'classified':
        assert d2.classifier is not None and mm.classifier is not None
        assert d2.cls_train_opts == mm.cls_train_cfg and d2.cls_test_opts == mm.cls_test_cfg
        missing, unexpected = mm.classifier.load_state_dict(d2.classifier.state_dict(),
                                                            strict=True)
        assert not missing and not unexpected
    else:
        assert d2.classifier is None and mm.classifier is None
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    images = d2.preprocess_image(batch)
    pad = tuple(images.tensor.shape[-2:])
    d2.train()
    mm.train()
    for seed in (0, 1, 2):
        random.seed(seed)
        torch.manual_seed(seed)
        l_d2 = d2(batch)
        random.seed(seed)
        torch.manual_seed(seed)
        l_mm = mm.loss(images.tensor, mmdet_samples(batch, pad))
        assert set(l_d2) == set(l_mm) == loss_keys
        for k in l_mm:
            assert abs(float(l_d2[k]) - float(l_mm[k])) <= 1e-6 * max(1.0, abs(float(l_mm[k]))), k
    d2.eval()
    mm.eval()
    test = [dict(image=x['image'], height=x['height'], width=x['width']) for x in batch]
    with torch.no_grad():
        out_d2 = d2(test)
        out_mm = mm.predict(images.tensor, mmdet_samples(batch, pad, with_gt=False),
                            rescale=True)
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b) > 0
        assert torch.equal(a.pred_classes, b.labels)
        assert float((a.pred_boxes.tensor - b.bboxes).abs().max()) == 0
        assert float((a.scores - b.scores).abs().max()) == 0
        assert int((a.pred_masks != b.masks).sum()) == 0
        assert a.pred_masks.shape[-2:] == (test[0]['height'], test[0]['width'])


def test_trains_one_step(d2_shapes):
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train_opts['scales'] = (1.0,)
    batch = first_batch(cfg, train=True, batch_size=2)
    losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.head.obj_out.weight.grad.abs().sum() > 0
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0
