"""CenterMask against golden data of the official release (youngwanLEE/centermask2 on
detectron2's Python sources), recorded by ``tools/official_parity/make_centermask_golden.py``.

The official-layout state_dicts of the fixture go through ``convert_state_dict('centermask', ...)``
and load strictly (only BatchNorm's ``num_batches_tracked`` counters, which FrozenBN lacks, are
left at their initial value). Compared (float64 weights and features, float32 boxes as detectron2
keeps them):

* VoVNet-eSE + FPN and ResNet-50 (caffe) + FPN: stage outputs and P3-P7 (abs 1e-9);
* eq. 2 RoI levels (exact);
* training of ``CenterMaskRoIHead``: RoI levels, pooled features, SAG-Mask logits, polygon mask
  targets (0 differing pixels), MaskIoU targets, MaskIoU predictions, ``loss_mask``,
  ``loss_maskiou`` and the gradient of their sum w.r.t. the mask predictor;
* inference: mask probabilities, ``mask_scores`` (box scores unchanged), detectron2's
  ``detector_postprocess`` (rescaled + clipped boxes, empty boxes dropped, pasted masks:
  0 differing pixels);
* the whole official model (VoVNet + FPN + FCOS + CenterROIHeads, float32, 2 images) against
  insplug's ``CenterMask`` built from ``configs/centermask/centermask_v39_3x.py`` at the
  fixture's widths: the five training losses (rel 1e-5) and the final detections (boxes 1e-3 px,
  scores and mask scores 1e-5, masks 0 differing pixels);
* the converter on the key layout of the full-size released models (V-39, R-50, Lite V-19)
  against insplug's configs.

Measured max abs differences (float64 parts): 0.0 for stages, P3-P7, pooled features, mask
logits, MaskIoU targets / predictions, test mask probabilities and mask scores; loss_mask 6e-8
(float32 in the official code), gradient 7e-18; whole detector (float32): losses <= 2.5e-7,
boxes 3e-5 px, scores 3.6e-7, mask scores 5.7e-7; 0 differing target / pasted mask pixels.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import PolygonMasks
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.converters import ConversionError, convert_state_dict
from insplug.converters.centermask import convert_vovnet_imagenet
from insplug.core.centermask.heads import gather_class
from insplug.core.centermask.maskiou import maskiou_targets, polygon_area_ratios
from insplug.core.centermask.roi import (adaptive_roi_levels, boxes_to_rois,
                                         multilevel_roi_align, polygon_mask_targets)
from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIXTURE = osp.join(REPO, 'tests', 'fixtures', 'official', 'centermask', 'golden.pt')
TOL = 1e-9     # float64 forward
LOSS_TOL = 1e-6  # loss_mask is float32 in the official code (its BCE target is cast to float32)


@pytest.fixture(scope='module')
def golden():
    if not osp.exists(FIXTURE):
        pytest.fail(f'missing fixture {FIXTURE}: run tools/official_parity/'
                    'make_centermask_golden.py')
    return torch.load(FIXTURE, weights_only=True)


def load_strict(module, state, prefix=''):
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith('num_batches_tracked') for k in missing), missing


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


class Trunk(torch.nn.Module):
    def __init__(self, backbone, neck):
        super().__init__()
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)


def neck_cfg(in_channels, out_channels):
    return dict(type='FPN', in_channels=in_channels, out_channels=out_channels, start_level=0,
                add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True)


def check_trunk(model, g):
    model = model.double()  # before loading: a float32 model would round the float64 weights
    full = convert_state_dict('centermask', g['state_dict_full'])
    assert 'bbox_head.conv_cls.weight' in full and 'roi_head.maskiou_head.fc_iou.weight' in full
    load_strict(model, {k: v for k, v in full.items() if k.startswith(('backbone.', 'neck.'))})
    model = model.eval()
    with torch.no_grad():
        stages = model.backbone(g['input'])
        pyramid = model.neck(stages)
    for ours, ref in zip(stages, g['stages']):
        assert ours.shape == ref.shape and maxdiff(ours, ref) < TOL
    for ours, ref in zip(pyramid, g['pyramid']):
        assert ours.shape == ref.shape and maxdiff(ours, ref) < TOL


def with_dummy_heads(g, roi_state):
    """Backbone golden state + the RoI heads of the RoI golden (the converter needs a whole
    centermask2 checkpoint to recognise it) + one FCOS key set of zeros."""
    state = dict(g['state_dict'])
    state.update(roi_state)
    state['proposal_generator.fcos_head.cls_logits.weight'] = torch.zeros(3, 8, 3, 3)
    return state


def test_vovnet_fpn(golden):
    g = dict(golden['backbones']['vovnet'])
    spec = g['spec']
    arch = dict(stem=spec['stem'], stage_ch=spec['stage_conv_ch'], out_ch=spec['stage_out_ch'],
                layers=spec['layer_per_block'], blocks=spec['block_per_stage'])
    model = Trunk(dict(type='VoVNetV2', arch=arch, out_indices=(1, 2, 3),
                       norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True),
                  neck_cfg(spec['stage_out_ch'][1:], 8))
    g['state_dict_full'] = with_dummy_heads(g, golden['roi']['state_dict'])
    check_trunk(model, g)


def test_resnet_fpn(golden):
    g = dict(golden['backbones']['resnet'])
    g['state_dict_full'] = with_dummy_heads(g, golden['roi']['state_dict'])
    model = Trunk(dict(type='mmdet.ResNet', depth=50, base_channels=2, out_indices=(1, 2, 3),
                       frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
                       norm_eval=True, style='caffe', init_cfg=None),
                  neck_cfg([16, 32, 64], 8))
    check_trunk(model, g)


def test_level_assignment_eq2(golden):
    g = golden['levels']
    h, w = g['image_size']
    areas = torch.full((len(g['boxes']),), float(h * w))
    assert torch.equal(adaptive_roi_levels(g['boxes'], areas, 3, 5), g['levels'])


def build_roi_head(golden):
    w = golden['roi']['widths']
    head = MODELS.build(dict(
        type='CenterMaskRoIHead', num_classes=w['num_classes'], in_channels=w['fpn'],
        conv_channels=w['mask'], num_convs=w['num_convs'], maskiou_conv_channels=w['maskiou'],
        maskiou_fc_channels=golden['roi']['fc_channels'])).double()
    converted = convert_state_dict('centermask', with_dummy_heads(
        golden['backbones']['vovnet'], golden['roi']['state_dict']))
    load_strict(head, converted, prefix='roi_head.')
    return head


def polygons_np(scene_img):
    return [[p.numpy() for p in obj] for obj in scene_img['polygons']]


def test_training_targets_forward_and_losses(golden):
    r = golden['roi']
    t = r['train']
    head = build_roi_head(golden).train()
    feats = r['features']
    boxes = t['fg_boxes']
    rois = boxes_to_rois(boxes)
    areas = torch.cat([b.new_full((len(b),), float(h * w))
                       for b, (h, w) in zip(boxes, r['image_sizes'])])
    levels = adaptive_roi_levels(rois[:, 1:], areas, 3, 5)
    assert torch.equal(levels, t['levels'])
    pooled = multilevel_roi_align(feats, rois, levels, (8, 16, 32), 14)
    assert maxdiff(pooled, t['pooled']) < TOL
    logits = head.mask_head(pooled)
    assert maxdiff(logits, t['mask_logits']) < TOL
    polys = [[polygons_np(s)[i] for i in idx.tolist()] for s, idx in zip(r['scene'],
                                                                         t['fg_gt_index'])]
    targets = torch.cat([polygon_mask_targets(p, b, 28) for p, b in zip(polys, boxes)])
    assert int((targets.to(torch.uint8) != t['mask_targets']).sum()) == 0
    labels = torch.cat([s['classes'][i] for s, i in zip(r['scene'], t['fg_gt_index'])])
    assert torch.equal(labels, t['maskiou_labels'])
    ratios = torch.cat([polygon_area_ratios(p, b) for p, b in zip(polys, boxes)])
    sel = gather_class(logits, labels)
    iou_t = maskiou_targets(sel, targets, ratios)
    assert maxdiff(iou_t, t['maskiou_targets']) < TOL
    pred = head.maskiou_head(pooled, sel.sigmoid()[:, None])
    assert maxdiff(pred, t['maskiou_pred']) < TOL

    # the adapter end to end (matching, GT appended, targets, losses) on the raw proposals;
    # the official samples positives in a random order, the losses are order-free means
    samples, proposals = [], []
    for s, (h, w) in zip(r['scene'], r['image_sizes']):
        d = DetDataSample(metainfo=dict(img_shape=(h, w)))
        d.gt_instances = InstanceData(bboxes=s['gt_boxes'], labels=s['classes'],
                                      masks=PolygonMasks(polygons_np(s), h, w))
        samples.append(d)
        proposals.append(InstanceData(bboxes=s['proposals']))
    losses = head.loss(feats, proposals, samples)
    assert abs(float(losses['loss_mask']) - float(t['loss_mask'])) < LOSS_TOL
    assert abs(float(losses['loss_maskiou']) - float(t['loss_maskiou'])) < TOL
    (losses['loss_mask'] + losses['loss_maskiou']).backward()
    assert maxdiff(head.mask_head.predictor.weight.grad, t['grad_predictor_weight']) < LOSS_TOL
    assert maxdiff(head.mask_head.predictor.bias.grad, t['grad_predictor_bias']) < LOSS_TOL


def test_inference_mask_scores_and_paste(golden):
    r = golden['roi']
    t = r['test']
    head = build_roi_head(golden).eval()
    results, metas = [], []
    for d, (h, w), (oh, ow) in zip(t['detections'], r['image_sizes'], r['ori_sizes']):
        results.append(InstanceData(bboxes=d['boxes'].clone(), scores=d['scores'].clone(),
                                    labels=d['labels'].clone()))
        metas.append(dict(img_shape=(h, w), ori_shape=(oh, ow), scale_factor=(w / ow, h / oh)))
    boxes = [d['boxes'] for d in t['detections']]
    rois = boxes_to_rois(boxes)
    areas = torch.cat([b.new_full((len(b),), float(h * w))
                       for b, (h, w) in zip(boxes, r['image_sizes'])])
    assert torch.equal(adaptive_roi_levels(rois[:, 1:], areas, 3, 5), t['levels'])
    with torch.no_grad():
        pooled = head._pool(r['features'], boxes, metas)
        probs = gather_class(head.mask_head(pooled), torch.cat([d['labels'] for d in
                                                               t['detections']])).sigmoid()
        assert maxdiff(probs, torch.cat(t['mask_probs'])) < TOL
        out = head.predict(r['features'], results, metas, rescale=True)
    for i, o in enumerate(out):
        assert len(o) == len(t['post_boxes'][i]) < len(t['detections'][i]['boxes'])
        assert maxdiff(o.bboxes, t['post_boxes'][i]) < 1e-4  # float32 boxes
        assert torch.equal(o.labels, t['post_labels'][i])
        assert maxdiff(o.scores, t['post_scores'][i]) == 0.0  # the box keeps its FCOS score
        assert maxdiff(o.mask_scores, t['post_mask_scores'][i]) < TOL
        assert int((o.masks.to(torch.uint8) != t['post_masks'][i]).sum()) == 0


@pytest.mark.parametrize('name,config', [
    ('centermask_V_39_eSE_FPN_ms_3x', 'configs/centermask/centermask_v39_3x.py'),
    ('centermask_R_50_FPN_ms_3x', 'configs/centermask/centermask_r50_3x.py'),
    ('centermask_lite_V_19_eSE_FPN_ms_4x', 'configs/centermask/centermask_lite_v19_4x.py'),
])
def test_converter_fills_full_size_configs(golden, name, config):
    from insplug.checkpoints.fit import check_state_dict_fit
    from insplug.converters import build_model_state
    official = {k: torch.zeros(shape) for k, shape in golden['full_size_keys'][name]}
    converted = convert_state_dict('centermask', official)
    fit = check_state_dict_fit(build_model_state(osp.join(REPO, config)), converted)
    assert fit.ok, fit.summary()


def test_converter_rejects_other_checkpoints(golden):
    with pytest.raises(ConversionError):
        convert_state_dict('centermask', {'encoder.initial_block.conv.weight': torch.zeros(1)})
    state = with_dummy_heads(golden['backbones']['vovnet'], golden['roi']['state_dict'])
    state['roi_heads.box_head.fc1.weight'] = torch.zeros(1)  # a key with no place in insplug
    with pytest.raises(ConversionError, match='box_head'):
        convert_state_dict('centermask', state)


def test_vovnet_imagenet_converter(golden):
    trunk = {k[len('backbone.bottom_up.'):]: v
             for k, v in golden['backbones']['vovnet']['state_dict'].items()
             if k.startswith('backbone.bottom_up.')}
    trunk['classifier.weight'] = torch.zeros(2, 40)
    out = convert_vovnet_imagenet(trunk)
    assert all(k.startswith('backbone.body.') for k in out) and len(out) == len(trunk) - 1
    with pytest.raises(ConversionError):
        convert_vovnet_imagenet({**trunk, 'stage2.OSA2_1.layers.0.OSA2_1_0/dw_conv3x3.weight':
                                 torch.zeros(1)})
    assert np.isfinite(float(out['backbone.body.stem.0.0.weight'].sum()))


# --------------------------------------------------------------------------- whole detector
def unpack(bits, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy())[:n].reshape(shape).astype(bool))


@pytest.fixture(scope='module')
def detector(golden):
    """insplug's CenterMask from configs/centermask/centermask_v39_3x.py at the fixture's widths,
    with the official whole-model state_dict converted and loaded."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    g = golden['detector']
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/centermask/centermask_v39_3x.py'))
    ch, k = g['channels'], g['num_classes']
    cfg.model.backbone.update(arch=dict(g['spec']), init_cfg=None)
    cfg.model.neck.update(in_channels=g['spec']['out_ch'][1:], out_channels=ch)
    cfg.model.bbox_head.update(num_classes=k, in_channels=ch, feat_channels=ch)
    cfg.model.roi_head.update(num_classes=k, in_channels=ch, conv_channels=ch,
                              maskiou_conv_channels=ch, maskiou_fc_channels=g['fc_channels'])
    model = MODELS.build(cfg.model)
    converted = convert_state_dict('centermask', g['state_dict'])
    load_strict(model, converted)
    return model


def det_batch(model, g, training):
    samples = []
    for (h, w), (oh, ow), gt in zip(g['image_sizes'], g['ori_sizes'], g['gt']):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(oh, ow),
                                        scale_factor=(w / ow, h / oh)))
        s.gt_instances = InstanceData(
            bboxes=gt['boxes'].float(), labels=gt['classes'],
            masks=PolygonMasks([[p.numpy() for p in obj] for obj in gt['polygons']], h, w))
        samples.append(s)
    data = model.data_preprocessor(dict(inputs=[i.float() for i in g['images']],
                                        data_samples=samples), training=training)
    return data['inputs'], data['data_samples']


def test_detector_pixel_normalisation(golden):
    g = golden['detector']
    # detectron2's PIXEL_MEAN / PIXEL_STD of the official config = insplug's data_preprocessor
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs/centermask/centermask_v39_3x.py'))
    assert torch.allclose(g['pixel_mean'], torch.tensor(cfg.model.data_preprocessor.mean))
    assert torch.allclose(g['pixel_std'], torch.tensor(cfg.model.data_preprocessor.std))
    # older detectron2 saved them in the checkpoint: the converter drops them
    state = dict(g['state_dict'], pixel_mean=g['pixel_mean'][:, None, None],
                 pixel_std=g['pixel_std'][:, None, None])
    assert not any(k.startswith('pixel_') for k in convert_state_dict('centermask', state))


def test_detector_training_losses(golden, detector):
    g = golden['detector']
    detector.train()
    torch.manual_seed(0)
    inputs, samples = det_batch(detector, g, training=True)
    losses = detector.loss(inputs, samples)
    names = dict(loss_cls='loss_fcos_cls', loss_bbox='loss_fcos_loc',
                 loss_centerness='loss_fcos_ctr', loss_mask='loss_mask',
                 loss_maskiou='loss_maskiou')
    for ours, theirs in names.items():
        a, b = float(losses[ours]), float(g['losses'][theirs])
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (ours, a, b)


def test_detector_inference(golden, detector):
    g = golden['detector']
    detector.eval()
    inputs, samples = det_batch(detector, g, training=False)
    with torch.no_grad():
        out = detector.predict(inputs, samples, rescale=True)
    for i, o in enumerate(out):
        p = o.pred_instances
        n = len(g['boxes'][i])
        assert len(p) == n
        assert torch.equal(p.labels, g['labels'][i])
        assert maxdiff(p.bboxes, g['boxes'][i]) < 1e-3   # float32 pixels
        assert maxdiff(p.scores, g['scores'][i]) < 1e-5
        assert maxdiff(p.mask_scores, g['mask_scores'][i]) < 1e-5
        (oh, ow) = g['ori_sizes'][i]
        ref = unpack(g['masks'][i], (n, oh, ow))
        assert int((p.masks != ref).sum()) == 0
