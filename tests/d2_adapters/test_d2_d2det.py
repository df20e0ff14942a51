"""D2Det through detectron2: ``D2DetROIHeads`` on ``GeneralizedRCNN``.

* built from ``configs/detectron2/d2det_r18_shapes.yaml``, the model runs a training step (all
  losses finite, gradients reach the discriminative pooling's offset predictor and the dense
  head's mask branch) and inference on demo images (image-sized boolean masks);
* the detectron2 and mmdet adapters, given the same weights, features and proposals, agree on the
  class logits, the detections (refined boxes, scores, labels), the mask probabilities pasted into
  the image and mask scores; and, with the same random draws (jitter, sub-sampling), on the
  four dense-regression losses.
"""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest

from d2_utils import INSTALL_HINT, REPO, d2_cfg, first_batch  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.core.postprocess.paste import paste_masks_in_boxes  # noqa: E402

CONFIG = 'd2det_r18_shapes.yaml'


@pytest.fixture(scope='module')
def model_cfg(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_train_step_and_inference(model_cfg):
    model, cfg = model_cfg
    batch = first_batch(cfg, train=True, batch_size=2)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert {'loss_cls', 'loss_reg', 'loss_overlap', 'loss_mask', 'loss_mask_iou',
            'loss_rpn_cls', 'loss_rpn_loc'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    heads = model.roi_heads
    assert heads.box_pools[0].offset_fc[0].weight.grad is not None
    assert heads.d2det_head.mask_logits.weight.grad.abs().sum() > 0
    assert heads.d2det_head.reg_conv.weight.grad.abs().sum() > 0
    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        assert inst.image_size == (inputs['height'], inputs['width'])
        assert inst.pred_masks.dtype == torch.bool
        assert inst.pred_masks.shape == (len(inst), inputs['height'], inputs['width'])
        assert inst.has('mask_scores') and len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE


# ---------------------------------------------------------------- parity with mmdet
SIZES = [(120, 96), (100, 80)]  # (h, w) un-padded image sizes; features padded to 128 x 96


def _mm_state(d2_heads):
    """detectron2 adapter keys -> mmdet roi_head keys (same tensors)."""
    out = {}
    for k, v in d2_heads.state_dict().items():
        if k.startswith('box_pools.'):
            out['bbox_roi_extractor.roi_layers.' + k[len('box_pools.'):]] = v
        elif k.startswith('box_head.'):
            out['bbox_head.' + k[len('box_head.'):]] = v
        else:
            out[k] = v
    return out


def _masks(h, w, boxes):
    yy, xx = np.mgrid[:h, :w] + 0.5
    out = []
    for x0, y0, x1, y1 in boxes.tolist():
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        out.append(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)
    return np.stack(out)


@pytest.fixture(scope='module')
def twins(d2_shapes):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    d2_heads = build_model(cfg).roi_heads
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # spread the class scores and offsets (no near-ties in NMS)
        d2_heads.box_head.fc_cls.weight.normal_(0, 0.5, generator=gen)
        for pool in d2_heads.box_pools:
            pool.offset_fc[-1].weight.normal_(0, 0.05, generator=gen)
            pool.weight_conv.weight.normal_(0, 0.05, generator=gen)
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'd2det_r18_shapes.py'))
    roi = mm_cfg.model.roi_head
    roi.train_cfg, roi.test_cfg = mm_cfg.model.train_cfg.rcnn, mm_cfg.model.test_cfg.rcnn
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_heads = MODELS.build(roi)
    mm_heads.load_state_dict(_mm_state(d2_heads), strict=True)
    d2_heads.eval()
    mm_heads.eval()
    channels = cfg.MODEL.FPN.OUT_CHANNELS
    feats = [torch.randn(2, channels, 128 // s, 96 // s, generator=gen) for s in (4, 8, 16, 32)]
    proposals = []
    for h, w in SIZES:
        xy = torch.rand(40, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
        wh = torch.rand(40, 2, generator=gen) * 50 + 8
        proposals.append(torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w, h]) - 1.)], 1))
    return SimpleNamespace(d2=d2_heads, mm=mm_heads, feats=feats, proposals=proposals,
                           features={f'p{i + 2}': f for i, f in enumerate(feats)})


def _d2_proposals(t):
    out = []
    for (h, w), boxes in zip(SIZES, t.proposals):
        out.append(Instances((h, w), proposal_boxes=Boxes(boxes),
                             objectness_logits=torch.zeros(len(boxes))))
    return out


def test_parity_class_logits(twins):
    from mmdet.structures.bbox import bbox2roi
    with torch.no_grad():
        d2 = twins.d2.box_logits(twins.features, [Boxes(b) for b in twins.proposals])
        mm = twins.mm._bbox_forward(tuple(twins.feats), bbox2roi(twins.proposals))['cls_score']
    assert torch.allclose(d2, mm, atol=1e-5, rtol=1e-5)


def test_parity_inference(twins):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples, rpn = [], []
    for (h, w), boxes in zip(SIZES, twins.proposals):
        samples.append(DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                                   scale_factor=(1.0, 1.0))))
        rpn.append(InstanceData(bboxes=boxes.clone(), scores=torch.zeros(len(boxes))))
    with torch.no_grad():
        d2 = twins.d2.predict(twins.features, _d2_proposals(twins))
        mm = twins.mm.predict(tuple(twins.feats), rpn, samples, rescale=True)
    for (h, w), a, b in zip(SIZES, d2, mm):
        assert len(a) == len(b) > 0
        assert torch.equal(a.pred_classes, b.labels)
        assert torch.allclose(a.scores, b.scores, atol=1e-6)
        assert torch.allclose(a.pred_boxes.tensor, b.bboxes, atol=1e-4)
        assert torch.allclose(a.mask_scores, b.mask_scores, atol=1e-5)
        pasted = paste_masks_in_boxes(a.pred_masks[:, 0], a.pred_boxes.tensor, h, w, 0.5)
        assert int((pasted != b.masks).sum()) == 0 and int(pasted.sum()) > 0


def test_parity_losses(twins):
    from mmengine.structures import InstanceData
    from mmdet.structures.mask import BitmapMasks
    gt_boxes = [torch.tensor([[10., 12., 60., 70.], [30., 5., 85., 40.]]),
                torch.tensor([[20., 20., 70., 75.]])]
    gt_labels = [torch.tensor([1, 4]), torch.tensor([2])]
    # positives: jittered copies of the GT boxes, assigned to them
    pos = [torch.cat([g + 2, g - 3, g * 1.05]) for g in gt_boxes]
    inds = [torch.arange(len(g)).repeat(3) for g in gt_boxes]
    masks = [_masks(h, w, g) for (h, w), g in zip(SIZES, gt_boxes)]
    sampling, gts, metas, d2_fg, d2_targets = [], [], [], [], []
    for (h, w), p, i, g, lab, m in zip(SIZES, pos, inds, gt_boxes, gt_labels, masks):
        sampling.append(SimpleNamespace(pos_priors=p, pos_gt_bboxes=g[i], pos_gt_labels=lab[i],
                                        pos_assigned_gt_inds=i))
        gts.append(InstanceData(bboxes=g, labels=lab, masks=BitmapMasks(m, h, w)))
        metas.append(dict(img_shape=(h, w)))
        bit = BitMasks(torch.from_numpy(m))
        d2_fg.append(Instances((h, w), proposal_boxes=Boxes(p), gt_boxes=Boxes(g[i]),
                               gt_classes=lab[i], gt_masks=bit[i], gt_index=i))
        d2_targets.append(Instances((h, w), gt_boxes=Boxes(g), gt_classes=lab, gt_masks=bit))
    twins.mm.train()
    twins.d2.train()
    torch.manual_seed(11)
    mm = twins.mm.dense_loss(tuple(twins.feats), sampling, gts, metas)
    torch.manual_seed(11)
    d2 = twins.d2.dense_loss(twins.features, d2_fg, d2_targets)
    twins.mm.eval()
    twins.d2.eval()
    assert set(mm) == set(d2) == {'loss_reg', 'loss_overlap', 'loss_mask', 'loss_mask_iou'}
    for k in mm:
        assert torch.allclose(mm[k], d2[k], rtol=1e-5, atol=1e-6), (k, mm[k], d2[k])
    assert all(float(v) > 0 for v in mm.values()), mm  # every term weighs something


def test_converted_mmdet_state_loads_strictly(d2_shapes):
    """``insplug.converters.d2det.to_detectron2`` maps every tensor of the mmdet demo model onto
    the detectron2 demo model (strict), unchanged."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.converters.d2det import to_detectron2
    from insplug.registry import MODELS
    cfg = d2_cfg(CONFIG, d2_shapes, 'MODEL.RESNETS.STRIDE_IN_1X1', False)
    d2_model = build_model(cfg)
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'd2det_r18_shapes.py'))
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_model = MODELS.build(mm_cfg.model)
    state = to_detectron2(mm_model.state_dict())  # drops BN's num_batches_tracked
    d2_keys = {k for k in d2_model.state_dict() if not k.endswith('num_batches_tracked')}
    assert set(state) == d2_keys, (sorted(set(state) - d2_keys)[:5],
                                   sorted(d2_keys - set(state))[:5])
    d2_model.load_state_dict(state, strict=True)
    for key in d2_keys:
        assert torch.equal(d2_model.state_dict()[key], state[key]), key
