"""The faithful FCOS through detectron2: ``InsplugFCOS`` (PROPOSAL_GENERATOR_REGISTRY) and
``build_insplug_fcos_resnet_fpn_backbone`` (BACKBONE_REGISTRY).

* agreement with the mmdet adapter :class:`insplug.mmdet.fcos.FaithfulFCOSHead`: the mmdet
  head gets random weights, they are mapped to the detectron2 layout by
  ``insplug.converters.fcos.fcos_head_to_detectron2_rules`` and loaded strictly; on the same
  float64 features of two images (different sizes, several objects) the raw outputs (training:
  stride units, test: pixels), the targets (labels, regression targets, matched objects), the
  positives handed to instance heads (image, object, centerness target, top features), the
  three losses and the post-processed detections (boxes, scores, classes, locations) agree
  (outputs/losses within 1e-5 abs; targets, classes and locations exactly);
* the yacs defaults equal the mmdet head's defaults (one source of truth);
* the backbone builder gives P3-P7 (TOP_LEVELS 2) or P3-P6 (TOP_LEVELS 1) with AdelaiDet's names.
"""
import inspect

import pytest

from d2_utils import INSTALL_HINT  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import (BACKBONE_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,  # noqa: E402
                                 build_backbone, build_proposal_generator)
from detectron2.structures import Boxes, ImageList, Instances  # noqa: E402

from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.fcos import FCOS_ARCH_DEFAULTS, InsplugFCOS  # noqa: E402

C, K = 32, 3
STRIDES = [8, 16, 32, 64, 128]


def fcos_cfg(**over):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = 'InsplugFCOS'
    f = cfg.MODEL.INSPLUG.FCOS
    f.NUM_CLASSES = K
    f.NUM_CLS_CONVS = f.NUM_BOX_CONVS = 2
    f.NORM_GROUPS = 8
    for k, v in over.items():
        setattr(f, k, v)
    return cfg


def test_registered_names():
    assert PROPOSAL_GENERATOR_REGISTRY.get('InsplugFCOS') is InsplugFCOS
    assert BACKBONE_REGISTRY.get('build_insplug_fcos_resnet_fpn_backbone') is not None


def test_yacs_defaults_equal_mmdet_head_defaults():
    pytest.importorskip('mmdet')
    from mmdet.models.dense_heads import AnchorFreeHead, FCOSHead
    from insplug.mmdet.fcos import FaithfulFCOSHead
    from insplug.mmdet.fcos.head import _TEST_DEFAULTS
    head = {**inspect.signature(AnchorFreeHead.__init__).parameters,
            **inspect.signature(FCOSHead.__init__).parameters,
            **inspect.signature(FaithfulFCOSHead.__init__).parameters}
    d = {k: p.default for k, p in head.items() if p.default is not inspect.Parameter.empty}
    f = get_cfg()
    add_insplug_config(f)
    f = f.MODEL.INSPLUG.FCOS
    # (mmdet's AnchorFreeHead defaults to strides 4-64: insplug's configs always set them)
    assert list(f.FPN_STRIDES) == list(FCOS_ARCH_DEFAULTS['strides']) == STRIDES
    assert tuple(f.SIZES_OF_INTEREST) == tuple(d['sizes_of_interest'])
    assert f.NUM_CLS_CONVS == f.NUM_BOX_CONVS == d['stacked_convs']
    assert f.NORM == d['norm_cfg']['type'] and f.NORM_GROUPS == d['norm_cfg']['num_groups']
    assert f.USE_SCALE == d['use_scale'] and f.NORM_REG_TARGETS == d['norm_reg_targets']
    assert f.CENTERNESS_ON_REG == d['centerness_on_reg']
    assert f.POS_RADIUS == d['center_sample_radius'] and f.CENTER_SAMPLE
    assert f.LOC_LOSS_TYPE == d['loss_type'] and f.IOU_SMOOTH == d['iou_smooth']
    assert f.BOX_QUALITY == d['box_quality'] and f.LOSS_NORMALIZER_CLS == d['cls_normalizer']
    assert (f.LOSS_ALPHA, f.LOSS_GAMMA) == (d['focal_alpha'], d['focal_gamma'])
    assert f.LOSS_WEIGHT_CLS == d['loss_weight_cls']
    assert f.INFERENCE_TH_TEST == _TEST_DEFAULTS['score_thr']
    assert f.PRE_NMS_TOPK_TEST == _TEST_DEFAULTS['nms_pre']
    assert f.POST_NMS_TOPK_TEST == _TEST_DEFAULTS['max_per_img']
    assert f.NMS_TH == _TEST_DEFAULTS['nms']['iou_threshold']
    assert f.THRESH_WITH_CTR == _TEST_DEFAULTS['thresh_with_ctr']
    assert f.CANDIDATE_MODE == _TEST_DEFAULTS['candidate_mode']
    assert f.SCORE == _TEST_DEFAULTS['score']
    assert f.CLIP_BEFORE_NMS == _TEST_DEFAULTS['clip_before_nms']
    # AdelaiDet adet/config/defaults.py (written out)
    assert (f.PRIOR_PROB, f.NUM_SHARE_CONVS, f.TOP_LEVELS) == (0.01, 0, 2)
    assert list(f.IN_FEATURES) == ['p3', 'p4', 'p5', 'p6', 'p7']


@pytest.mark.parametrize('levels,names', [(2, ['p3', 'p4', 'p5', 'p6', 'p7']),
                                          (1, ['p3', 'p4', 'p5', 'p6'])])
def test_backbone_builder(levels, names):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.MODEL.BACKBONE.NAME = 'build_insplug_fcos_resnet_fpn_backbone'
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ['res3', 'res4', 'res5']
    cfg.MODEL.FPN.IN_FEATURES = ['res3', 'res4', 'res5']
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.INSPLUG.FCOS.TOP_LEVELS = levels
    backbone = build_backbone(cfg)
    out = backbone(torch.zeros(1, 3, 128, 128))
    assert list(out) == names
    assert [out[n].shape[-1] for n in names] == [128 // s for s in STRIDES[:len(names)]]
    keys = set(backbone.state_dict())
    assert {'fpn_lateral3.weight', 'fpn_output5.weight', 'top_block.p6.weight'} <= keys
    assert ('top_block.p7.weight' in keys) == (levels == 2)


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 + (
                1.0 if p.dim() == 0 else 0.0))


def build_pair(use_scale=True, top_channels=0):
    pytest.importorskip('mmdet')
    from mmengine.registry import DefaultScope
    from insplug.converters.common import rename_keys
    from insplug.converters.fcos import (fcos_head_to_detectron2_rules,
                                         fix_fcos_scales_detectron2)
    from insplug.registry import MODELS
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(dict(
            type='FaithfulFCOSHead', num_classes=K, in_channels=C, feat_channels=C,
            stacked_convs=2, strides=STRIDES, use_scale=use_scale, top_channels=top_channels,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            test_cfg=dict(score_thr=0.05, nms_pre=1000, nms=dict(type='nms',
                                                                   iou_threshold=0.6),
                          max_per_img=100)))
    randomize(mm)
    cfg = fcos_cfg(USE_SCALE=use_scale)
    shapes = {f'p{i}': ShapeSpec(channels=C, stride=2 ** i) for i in range(3, 8)}
    d2 = build_proposal_generator(cfg, shapes)
    sd = {k: v for k, v in mm.state_dict().items() if not k.startswith('top_layer.')}
    sd = fix_fcos_scales_detectron2(rename_keys(
        {'bbox_head.' + k: v for k, v in sd.items()},
        fcos_head_to_detectron2_rules(num_convs=2, dst_prefix='fcos_head.'),
        method='fcos (to detectron2)'), 'fcos_head.')
    d2.load_state_dict(sd, strict=True)
    return mm.double(), d2.double()


@pytest.fixture(scope='module')
def data():
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, C, 128 // s, 96 // s if s < 128 else 1, generator=g,
                         dtype=torch.float64) for s in STRIDES]
    sizes = [(128, 96), (112, 80)]
    boxes = [torch.tensor([[10., 12, 60, 70], [40, 30, 90, 120], [2, 2, 95, 127],
                           [30, 40, 46, 52]], dtype=torch.float64),
             torch.tensor([[5., 5, 70, 100], [20, 20, 50, 40]], dtype=torch.float64)]
    labels = [torch.tensor([0, 2, 1, 2]), torch.tensor([1, 1])]
    gts = [Instances(s, gt_boxes=Boxes(b), gt_classes=lab)
           for s, b, lab in zip(sizes, boxes, labels)]
    return feats, sizes, gts


def mm_gt(gts):
    from mmengine.structures import InstanceData
    return [InstanceData(bboxes=g.gt_boxes.tensor, labels=g.gt_classes) for g in gts]


@pytest.mark.parametrize('use_scale', [True, False])
def test_agreement_with_mmdet(data, use_scale):
    feats, sizes, gts = data
    mm, d2 = build_pair(use_scale)
    top = torch.nn.Conv2d(C, 6, 3, padding=1).double()
    mm.top_layer = top
    mm.top_channels = 6
    fdict = {f'p{i + 3}': f for i, f in enumerate(feats)}
    images = ImageList(torch.zeros(2, 3, 128, 96, dtype=torch.float64), sizes)

    # raw outputs, training (stride units) and test (pixels)
    mm.train()
    d2.train()
    mm_out = mm(tuple(feats))
    d2_out = d2.forward_head(fdict, top)
    for a, b in zip(mm_out, d2_out):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-10)
    # targets
    locations = d2.locations(d2_out[0])
    mm_t = mm.get_targets(mm._points([f.shape[-2:] for f in feats], torch.float64, 'cpu'),
                          mm_gt(gts))
    d2_t = d2.targets(locations, gts)
    for a, b in zip(mm_t, d2_t):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert (d2_t[0][0] < K).sum() > 10 and (d2_t[1][0] < K).sum() > 5
    # losses and positives
    mm_losses = mm.loss_by_feat(*mm_out[:3], mm_out[3], batch_gt_instances=mm_gt(gts),
                                batch_img_metas=[dict(img_shape=s) for s in sizes])
    results, d2_losses = d2(images, fdict, gts, top)
    names = {'loss_cls': 'loss_fcos_cls', 'loss_bbox': 'loss_fcos_loc',
             'loss_centerness': 'loss_fcos_ctr'}
    assert set(d2_losses) == set(names.values())
    for k, v in names.items():
        torch.testing.assert_close(d2_losses[v], mm_losses[k], rtol=0, atol=1e-10)
    inst = results['instances']
    for i, pos in enumerate(mm.get_positive_infos()):
        m = inst.im_inds == i
        assert torch.equal(inst.gt_inds[m], pos.pos_assigned_gt_inds)
        assert torch.equal(inst.locations[m], pos.points)
        torch.testing.assert_close(inst.gt_ctrs[m], pos.ctr_targets, rtol=0, atol=1e-12)
        torch.testing.assert_close(inst.top_feats[m], pos.param_preds, rtol=0, atol=1e-12)
        assert torch.equal(inst.labels[m], gts[i].gt_classes[pos.pos_assigned_gt_inds])
    torch.testing.assert_close(results['loss_denorm'],
                               mm.get_positive_infos()[0].loss_denorm, rtol=0, atol=1e-12)
    # detections
    mm.eval()
    d2.eval()
    with torch.no_grad():
        mm_out = mm(tuple(feats))
        d2_out = d2.forward_head(fdict, top)
        for x, y, s in zip(mm_out[1], d2_out[1], STRIDES):
            torch.testing.assert_close(x, y * s, rtol=0, atol=1e-9)
        mm_det = mm.predict_by_feat(*mm_out[:3], top_feats=mm_out[3],
                                    batch_img_metas=[dict(img_shape=s) for s in sizes],
                                    rescale=False)
        d2_det, extra = d2(images, fdict, None, top)
    assert extra == {}
    for a, b, size in zip(d2_det, mm_det, sizes):
        assert a.image_size == size and 0 < len(a) == len(b) <= 100
        # detectron2's Boxes hold float32
        torch.testing.assert_close(a.pred_boxes.tensor, b.bboxes.float(), rtol=0, atol=0)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-12)
        assert torch.equal(a.pred_classes, b.labels)
        assert torch.equal(a.locations, b.points) and torch.equal(a.fpn_levels, b.levels)
        torch.testing.assert_close(a.top_feats, b.param_preds, rtol=0, atol=1e-12)
        assert a.proposal_boxes is a.pred_boxes


def test_yield_proposal_in_training(data):
    feats, sizes, gts = data
    cfg = fcos_cfg(YIELD_PROPOSAL=True, INFERENCE_TH_TRAIN=0.0, POST_NMS_TOPK_TRAIN=7)
    shapes = {f'p{i}': ShapeSpec(channels=C, stride=2 ** i) for i in range(3, 8)}
    d2 = build_proposal_generator(cfg, shapes).double().train()
    fdict = {f'p{i + 3}': f for i, f in enumerate(feats)}
    images = ImageList(torch.zeros(2, 3, 128, 96, dtype=torch.float64), sizes)
    results, losses = d2(images, fdict, gts)
    assert [len(p) for p in results['proposals']] == [7, 7]
    assert not results['proposals'][0].scores.requires_grad
    sum(losses.values()).backward()
    assert d2.fcos_head.cls_logits.weight.grad.abs().sum() > 0
