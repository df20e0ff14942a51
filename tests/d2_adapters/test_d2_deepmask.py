"""DeepMask through detectron2: the ``DeepMask`` meta-architecture and the
``DeepMaskProposalGenerator``.

* agreement with the mmdet adapter (``configs/deepmask/deepmask_r18_shapes.py`` vs
  ``configs/detectron2/deepmask_r18_shapes.yaml``): the mmdet weights load strictly (same
  ``net.*`` keys); with the same RNG seed (window sampling, dropout) the same batch gives the same
  losses, and the same proposals (scores, boxes, 0 differing mask pixels);
* the Mask R-CNN yaml with DeepMask proposals trains one step (DeepMask losses renamed
  ``loss_rpn_*`` next to the ROI heads' losses, all finite) and predicts.
(No official golden data: the release is Lua Torch7; see tests/core/test_deepmask_core.py.)
"""
import pytest

from d2_utils import INSTALL_HINT, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import (META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,  # noqa: E402
                                 build_model)

from insplug.detectron2.deepmask import DeepMask, DeepMaskProposalGenerator  # noqa: E402
# the mmdet model builder and DetDataSample batch of the PolarMask agreement test
from test_d2_polarmask import mmdet_model, mmdet_samples  # noqa: E402

SHAPES = 'deepmask_r18_shapes.yaml'


def test_registered_names():
    assert META_ARCH_REGISTRY.get('DeepMask') is DeepMask
    assert PROPOSAL_GENERATOR_REGISTRY.get('DeepMaskProposalGenerator') \
        is DeepMaskProposalGenerator


def test_agreement_with_mmdet(d2_shapes):
    pytest.importorskip('mmdet')
    cfg = d2_cfg(SHAPES, d2_shapes)
    torch.manual_seed(0)
    mm = mmdet_model('configs/deepmask/deepmask_r18_shapes.py')
    d2 = build_model(cfg)
    missing, unexpected = d2.load_state_dict(mm.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    images = d2.preprocess_image(batch)
    pad = tuple(images.tensor.shape[-2:])
    d2.train()
    mm.train()
    torch.manual_seed(1)
    l_d2 = d2(batch)
    torch.manual_seed(1)
    l_mm = mm.loss(images.tensor, mmdet_samples(batch, pad))
    assert set(l_d2) == set(l_mm) == {'loss_mask', 'loss_score'}
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
        assert len(a) == len(b) == 100
        assert torch.equal(a.pred_classes, b.labels)
        assert float((a.pred_boxes.tensor - b.bboxes).abs().max()) == 0
        assert float((a.scores - b.scores).abs().max()) == 0
        assert int((a.pred_masks != b.masks).sum()) == 0
        assert a.pred_masks.shape[-2:] == (test[0]['height'], test[0]['width'])


def test_mask_rcnn_with_deepmask_proposals_trains_and_predicts(d2_shapes):
    cfg = d2_cfg('mask_rcnn_deepmask_proposals_shapes.yaml', d2_shapes)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.proposal_generator, DeepMaskProposalGenerator)
    batch = first_batch(cfg, train=True, batch_size=2)
    model.train()
    from detectron2.utils.events import EventStorage
    with EventStorage(0):
        losses = model(batch)
    assert {'loss_rpn_mask', 'loss_rpn_score', 'loss_mask', 'loss_cls',
            'loss_box_reg'} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.proposal_generator.net.head.mask.weight.grad.abs().sum() > 0
    assert model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([dict(image=batch[0]['image'])])
    inst = out[0]['instances']
    assert inst.has('pred_masks') and inst.pred_masks.shape[-2:] == batch[0]['image'].shape[-2:]
