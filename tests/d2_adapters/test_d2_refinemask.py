"""RefineMask through detectron2: ``RefineMaskROIHeads`` + ``RefineMaskHead``.

* built from ``configs/detectron2/refinemask_r18_shapes.yaml``, the model runs a training step
  (all losses finite, gradients reach the mask head and its semantic branch) and inference on
  demo images (image-sized boolean masks), and a few optimizer steps on one batch lower the
  loss;
* the detectron2 and mmdet adapters, given the same weights, features and RoIs, agree to float
  tolerance on the pooled RoI features, the test-time mask probabilities, the masks pasted into
  the image, and both training losses (one image with instances, one without).
"""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest

from d2_utils import INSTALL_HINT, REPO, d2_cfg, first_batch  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.modeling.postprocessing import detector_postprocess  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.detectron2 import build_optimizer  # noqa: E402

CONFIG = 'refinemask_r18_shapes.yaml'


@pytest.fixture(scope='module')
def model_cfg(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_train_step_and_inference(model_cfg):
    model, cfg = model_cfg
    # the official doubled box losses reach detectron2's box predictor
    assert model.roi_heads.box_predictor.loss_weight == {'loss_cls': 2.0, 'loss_box_reg': 2.0}
    batch = first_batch(cfg, train=True, batch_size=2)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert {'loss_mask', 'loss_semantic', 'loss_cls', 'loss_box_reg', 'loss_rpn_cls',
            'loss_rpn_loc'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    model.zero_grad()
    (losses['loss_mask'] + losses['loss_semantic']).backward()
    head = model.roi_heads.mask_head
    assert head.final_logits.weight.grad.abs().sum() > 0
    assert head.semantic.logits.weight.grad.abs().sum() > 0
    assert head.instance_convs[0].weight.grad.abs().sum() > 0

    # an image without instances (as the mapper leaves it: no gt_masks field) trains too
    h, w = batch[1]['image'].shape[-2:]
    batch[1]['instances'] = Instances((h, w), gt_boxes=Boxes(torch.zeros(0, 4)),
                                      gt_classes=torch.zeros(0, dtype=torch.int64))
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses

    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        assert inst.image_size == (inputs['height'], inputs['width'])
        assert inst.pred_masks.dtype == torch.bool
        assert inst.pred_masks.shape == (len(inst), inputs['height'], inputs['width'])
        assert len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE


def test_a_few_steps_lower_the_loss(d2_shapes):
    """Fitting one batch (the yaml's optimizer and clipping, lr lowered for the
    un-warmed-up start): the mask + semantic loss of the last two of four steps averages
    below half the first (a 6-step run went 131 -> 36 -> 16 -> 8 -> 5 -> 4)."""
    cfg = d2_cfg(CONFIG, d2_shapes, 'SOLVER.BASE_LR', 0.002)
    torch.manual_seed(1)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    batch = first_batch(cfg, train=True, batch_size=2)
    totals = []
    with EventStorage(0):
        for _ in range(4):
            torch.manual_seed(2)  # same proposal sampling each step
            losses = model(batch)
            total = losses['loss_mask'] + losses['loss_semantic']
            totals.append(float(total))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    assert all(np.isfinite(totals))
    assert np.mean(totals[-2:]) < 0.5 * totals[0], totals


# ---------------------------------------------------------------- parity with mmdet
SIZES = [(120, 90), (100, 80)]  # un-padded image sizes; features are padded to 128 x 96


def make_masks(h, w, boxes):
    """Binary masks (M, h, w): an ellipse inside each box (independent of both adapters)."""
    yy, xx = np.mgrid[:h, :w] + 0.5
    out = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        out.append(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)
    return np.stack(out) if out else np.zeros((0, h, w), dtype=bool)


@pytest.fixture(scope='module')
def twin_heads(d2_shapes):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    d2_heads = build_model(cfg).roi_heads
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'refinemask_r18_shapes.py'))
    roi = mm_cfg.model.roi_head
    roi.train_cfg, roi.test_cfg = mm_cfg.model.train_cfg.rcnn, mm_cfg.model.test_cfg.rcnn
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_heads = MODELS.build(roi)
    mm_heads.mask_head.load_state_dict(d2_heads.mask_head.state_dict())
    gen = torch.Generator().manual_seed(3)
    channels = cfg.MODEL.FPN.OUT_CHANNELS
    feats = [torch.randn(2, channels, 128 // s, 96 // s, generator=gen) for s in (4, 8, 16, 32)]
    boxes = [torch.tensor([[10., 12., 60., 70.], [30., 5., 85., 40.], [2., 50., 40., 115.]]),
             torch.tensor([[20., 20., 70., 90.], [5., 30., 50., 60.]])]
    labels = [torch.tensor([0, 3, 4]), torch.tensor([2, 2])]
    return SimpleNamespace(d2=d2_heads, mm=mm_heads, feats=feats, boxes=boxes, labels=labels,
                           features={f'p{i + 2}': f for i, f in enumerate(feats)})


def test_parity_inference(twin_heads):
    from mmdet.structures.bbox import bbox2roi
    from mmengine.structures import InstanceData
    t = twin_heads
    t.d2.eval()
    t.mm.eval()
    rois = bbox2roi(t.boxes)
    with torch.no_grad():
        pooled_d2 = t.d2.mask_pooler(t.feats, [Boxes(b) for b in t.boxes])
        pooled_mm = t.mm.mask_roi_extractor(tuple(t.feats), rois)
        torch.testing.assert_close(pooled_d2, pooled_mm, atol=1e-5, rtol=1e-5)

        instances = [Instances(size, pred_boxes=Boxes(b.clone()), pred_classes=lab,
                               scores=torch.linspace(0.9, 0.5, len(b)))
                     for size, b, lab in zip(SIZES, t.boxes, t.labels)]
        instances = t.d2._forward_mask(t.features, instances)
        probs_d2 = torch.cat([i.pred_masks for i in instances])
        head = t.mm.mask_head
        sem_feats, sem_logits = head.forward_semantic(t.feats[0])
        stages = head.forward_instances(pooled_mm, sem_feats, sem_logits, rois,
                                        torch.cat(t.labels))
        probs_mm = head.test_logits(stages).sigmoid()[:, None]
        assert probs_d2.shape == (5, 1, 112, 112)
        torch.testing.assert_close(probs_d2, probs_mm, atol=1e-5, rtol=1e-4)

        metas = [dict(ori_shape=s, img_shape=s, scale_factor=(1.0, 1.0),
                      batch_input_shape=(128, 96)) for s in SIZES]
        results = [InstanceData(bboxes=b.clone(), labels=lab, scores=inst.scores)
                   for b, lab, inst in zip(t.boxes, t.labels, instances)]
        results = t.mm.predict_mask(tuple(t.feats), metas, results, rescale=False)
    for inst, res, (h, w) in zip(instances, results, SIZES):
        pasted = detector_postprocess(inst, h, w).pred_masks
        assert pasted.shape == res.masks.shape == (len(inst), h, w)
        assert pasted.any()
        agree = (pasted == res.masks.bool()).float().mean()
        assert agree > 0.999, float(agree)


def test_parity_training_losses(twin_heads):
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    t = twin_heads
    t.d2.train()
    t.mm.train()
    (h0, w0), (h1, w1) = SIZES
    gt_boxes = np.array([[8., 10., 62., 72.], [28., 4., 88., 42.], [0., 48., 42., 118.]])
    gt_masks = make_masks(h0, w0, gt_boxes)
    gt_labels = t.labels[0]
    assigned = torch.tensor([0, 1, 2])
    proposals = [
        Instances((h0, w0), proposal_boxes=Boxes(t.boxes[0]), gt_classes=gt_labels,
                  gt_masks=BitMasks(torch.as_tensor(gt_masks[assigned.numpy()]))),
        Instances((h1, w1), proposal_boxes=Boxes(torch.zeros(0, 4)),
                  gt_classes=torch.zeros(0, dtype=torch.int64),
                  gt_masks=BitMasks(torch.zeros(0, h1, w1, dtype=torch.bool))),
    ]
    targets = [
        Instances((h0, w0), gt_classes=gt_labels,
                  gt_masks=BitMasks(torch.as_tensor(gt_masks))),
        Instances((h1, w1), gt_classes=torch.zeros(0, dtype=torch.int64),
                  gt_masks=BitMasks(torch.zeros(0, h1, w1, dtype=torch.bool))),
    ]
    losses_d2 = t.d2._forward_mask(t.features, proposals, targets)

    sampling = [SimpleNamespace(pos_priors=t.boxes[0], pos_assigned_gt_inds=assigned,
                                pos_gt_labels=gt_labels),
                SimpleNamespace(pos_priors=torch.zeros(0, 4),
                                pos_assigned_gt_inds=torch.zeros(0, dtype=torch.int64),
                                pos_gt_labels=torch.zeros(0, dtype=torch.int64))]
    gts = [InstanceData(masks=BitmapMasks(gt_masks.astype(np.uint8), h0, w0), labels=gt_labels),
           InstanceData(masks=BitmapMasks(np.zeros((0, h1, w1), np.uint8), h1, w1),
                        labels=torch.zeros(0, dtype=torch.int64))]
    losses_mm = t.mm.mask_loss(tuple(t.feats), sampling, None, gts)['loss_mask']
    assert set(losses_d2) == {'loss_mask', 'loss_semantic'}
    assert float(losses_d2['loss_mask']) > 0 and float(losses_d2['loss_semantic']) > 0
    torch.testing.assert_close(losses_d2['loss_mask'], losses_mm['loss_instance'], rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(losses_d2['loss_semantic'], losses_mm['loss_semantic'],
                               rtol=1e-4, atol=1e-5)
