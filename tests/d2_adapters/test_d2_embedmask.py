"""EmbedMask through detectron2: the ``InsplugEmbedMask`` meta-architecture.

* built from ``configs/detectron2/embedmask_r18_shapes.yaml`` it trains one step (four finite
  losses, gradients reach the FCOS head, the proposal / pixel embedding branches and the
  backbone) and infers on demo images (image-sized bool masks, boxes, sorted scores);
* agreement with the mmdet adapter ``EmbedMaskHead`` (which the official golden data covers):
  random mmdet weights mapped by ``insplug.converters.embedmask.to_detectron2`` load strictly;
  on the same float64 features of two images (different sizes) the raw outputs (FCOS,
  proposal embeddings, margins, pixel embeddings) and the four losses agree within 1e-5 (abs),
  and the detections (boxes, scores, classes) and masks (output 1.5x the input: 0 differing
  pixels) are equal;
* official golden data (``tests/fixtures/official/embedmask/golden.pt``, the release run by
  ``tools/official_parity/make_embedmask_golden.py``): the official head's state_dict goes
  through ``convert_embedmask`` + ``to_detectron2`` and loads strictly; on the official FPN
  features the four losses are within 1e-5 (relative) of the release's and the detections
  (classes exact, scores 1e-5, boxes float32 rounding) and the masks at the original image size
  (0 differing pixels) equal the release's;
* a file shaped like the released R-50 checkpoint goes through ``convert_embedmask`` +
  ``to_detectron2`` and loads strictly into the model of ``embedmask_r50_1x.yaml``; the
  LazyConfig builds the same model;
* the yaml files carry the mmdet configs' values key by key.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402

from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.embedmask import (EMBEDMASK_DEFAULTS, InsplugEmbedMask,  # noqa: E402
                                          InsplugEmbedMaskHead)
from insplug.detectron2.fcos import InsplugFCOS  # noqa: E402

CONFIG = 'embedmask_r18_shapes.yaml'
LOSSES = {'loss_fcos_cls', 'loss_fcos_loc', 'loss_fcos_ctr', 'loss_mask'}
MM_NAMES = {'loss_cls': 'loss_fcos_cls', 'loss_bbox': 'loss_fcos_loc',
            'loss_centerness': 'loss_fcos_ctr', 'loss_mask': 'loss_mask'}
C, K, D = 32, 3, 8
STRIDES = [8, 16, 32, 64, 128]
GOLDEN = osp.join(REPO, 'tests', 'fixtures', 'official', 'embedmask', 'golden.pt')


def test_registered():
    assert META_ARCH_REGISTRY.get('InsplugEmbedMask') is InsplugEmbedMask


def test_train_step_and_inference(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes, 'MODEL.INSPLUG.FCOS.INFERENCE_TH_TEST', 0.0)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    losses = model(first_batch(cfg, train=True, batch_size=2))
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    head = model.embed_head
    for p in (model.proposal_generator.fcos_head.cls_logits.weight,
              head.proposal_spatial_embed_pred.weight, head.proposal_margin_pred.weight,
              head.pixel_other_embed_pred.weight, head.mask_tower[0].weight,
              model.backbone.bottom_up.stem.conv1.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w) and 0 < len(inst) <= 50
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        assert inst.pred_classes.max() < 5


# ---------------------------------------------------------------------- mmdet agreement
class FixedFeatures(Backbone):
    def __init__(self, feats, channels=C, strides=STRIDES):
        super().__init__()
        self.feats = feats
        self.shapes = {f'p{i + 3}': ShapeSpec(channels=channels, stride=s)
                       for i, s in enumerate(strides)}

    def forward(self, x):
        return dict(zip(self.shapes, self.feats))

    def output_shape(self):
        return self.shapes


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1
            p.copy_(noise + (1.0 if name.endswith('scale') else 0.0))


@pytest.fixture(scope='module')
def twins():
    pytest.importorskip('mmdet')
    from mmengine.registry import DefaultScope
    from insplug.converters.embedmask import to_detectron2
    from insplug.registry import MODELS
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(dict(
            type='EmbedMaskHead', num_classes=K, in_channels=C, feat_channels=C,
            stacked_convs=2, strides=STRIDES, embed_dim=D,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            test_cfg=dict(score_thr=0.05, nms_pre=1000, score='product',
                          nms=dict(type='nms', iou_threshold=0.6), max_per_img=20)))
    randomize(mm)
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, C, max(128 // s, 1), max(96 // s, 1), generator=g,
                         dtype=torch.float64) for s in STRIDES]
    cfg = get_cfg()
    add_insplug_config(cfg)
    f = cfg.MODEL.INSPLUG.FCOS
    f.NUM_CLASSES, f.NUM_CLS_CONVS, f.NUM_BOX_CONVS, f.NORM_GROUPS = K, 2, 2, 8
    f.SCORE, f.POST_NMS_TOPK_TEST = 'product', 20
    backbone = FixedFeatures(feats)
    d2 = InsplugEmbedMask(
        backbone=backbone, proposal_generator=InsplugFCOS(cfg, backbone.output_shape()),
        embed_head=InsplugEmbedMaskHead(C, D, len(STRIDES), 2, 8), pixel_mean=[0., 0., 0.])
    state = to_detectron2({'bbox_head.' + k: v for k, v in mm.state_dict().items()})
    d2.load_state_dict(state, strict=True)
    sizes = [(128, 96), (112, 80)]
    gts = []
    for size, boxes, labels in (
            (sizes[0], [[10, 12, 60, 70], [40, 30, 90, 120], [30, 40, 46, 52]], [0, 2, 2]),
            (sizes[1], [[5, 5, 70, 100], [20, 20, 50, 40]], [1, 1])):
        masks = torch.zeros(len(boxes), *size, dtype=torch.bool)
        for m, (x1, y1, x2, y2) in zip(masks, boxes):  # ellipse-ish blobs inside the boxes
            yy, xx = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]),
                                    indexing='ij')
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            m |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        gts.append(Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float64)),
                             gt_classes=torch.tensor(labels), gt_masks=BitMasks(masks)))
    return dict(mm=mm.double(), d2=d2.double(), feats=feats, sizes=sizes, gts=gts)


def mm_gts(gts):
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    return [InstanceData(bboxes=g.gt_boxes.tensor, labels=g.gt_classes,
                         masks=BitmapMasks(g.gt_masks.tensor.numpy().astype('uint8'),
                                           *g.image_size)) for g in gts]


def test_agreement_with_mmdet(twins):
    mm, d2, feats, sizes, gts = (twins[k] for k in ('mm', 'd2', 'feats', 'sizes', 'gts'))
    batch = [dict(image=torch.zeros(3, *s, dtype=torch.float64), instances=g, height=s[0],
                  width=s[1]) for s, g in zip(sizes, gts)]
    mm.train()
    d2.train()
    outs_mm = mm(tuple(feats))
    outs_d2 = d2.forward_outputs(d2.backbone(None))
    for a, b in zip(outs_mm[:5], outs_d2[:5]):  # cls, box (stride units), ctr, embeds, margins
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-10)
    torch.testing.assert_close(outs_mm[5], outs_d2[5], rtol=0, atol=1e-10)
    losses_mm = mm.loss_by_feat(*outs_mm, batch_gt_instances=mm_gts(gts),
                                batch_img_metas=[dict(img_shape=s) for s in sizes])
    losses_d2 = d2(batch)
    assert set(losses_d2) == LOSSES
    for k, v in MM_NAMES.items():
        assert abs(float(losses_d2[v]) - float(losses_mm[k])) < 1e-5, k
    assert float(losses_d2['loss_mask']) > 0

    mm.eval()
    d2.eval()
    out_hw = [(int(h * 1.5), int(w * 1.5)) for h, w in sizes]
    with torch.no_grad():
        res_mm = mm.predict_by_feat(
            *mm(tuple(feats)), rescale=True,
            batch_img_metas=[dict(img_shape=s, ori_shape=o) for s, o in zip(sizes, out_hw)])
        res_d2 = d2([dict(image=torch.zeros(3, *s), height=o[0], width=o[1])
                     for s, o in zip(sizes, out_hw)])
    for a, b, o in zip(res_d2, res_mm, out_hw):
        a = a['instances']
        assert a.image_size == o and 0 < len(a) == len(b)
        torch.testing.assert_close(a.pred_boxes.tensor, b.bboxes.float(), rtol=0, atol=1e-5)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-12)
        assert torch.equal(a.pred_classes, b.labels)
        assert a.pred_masks.shape == b.masks.shape == (len(a),) + o
        assert int((a.pred_masks != b.masks).sum()) == 0
        assert a.pred_masks.any()


# ---------------------------------------------------------------------- official golden data
def unpack(packed, shape):
    import numpy as np
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy())[:n].reshape(shape).astype(bool))


@pytest.fixture(scope='module')
def golden_model():
    """The official head's state_dict (``golden.pt``) through ``convert_embedmask`` and
    ``to_detectron2``, loaded strictly into InsplugEmbedMask on the official FPN features."""
    from insplug.converters import convert_state_dict
    from insplug.converters.embedmask import to_detectron2
    g = torch.load(GOLDEN, weights_only=True)
    c = g['config']
    cfg = get_cfg()
    add_insplug_config(cfg)
    f = cfg.MODEL.INSPLUG.FCOS
    f.NUM_CLASSES, f.FPN_STRIDES = c['num_classes'], list(c['strides'])
    f.SIZES_OF_INTEREST = list(c['interest'])
    f.NUM_CLS_CONVS = f.NUM_BOX_CONVS = c['num_convs']
    f.POS_RADIUS, f.SCORE = c['center_radius'], 'product'
    f.INFERENCE_TH_TEST, f.PRE_NMS_TOPK_TEST = c['inference_th'], c['pre_nms_top_n']
    f.NMS_TH, f.POST_NMS_TOPK_TEST = c['nms_th'], c['detections_per_img']
    backbone = FixedFeatures([x.double() for x in g['features']], c['channels'], c['strides'])
    model = InsplugEmbedMask(
        backbone=backbone, proposal_generator=InsplugFCOS(cfg, backbone.output_shape()),
        embed_head=InsplugEmbedMaskHead(
            c['channels'], c['embed_dim'], len(c['strides']), c['num_convs'], 32,
            c['per_dim_margin'], c['prior_margin'], c['margin_reduce_factor'],
            c['embed_reduce_factor']),
        mask_scale_factor=c['mask_scale_factor'], box_padding=c['box_padding'],
        loss_mask_weight=c['loss_mask_alpha'], mask_threshold=c['mask_th'])
    model.load_state_dict(to_detectron2(convert_state_dict('embedmask', g['state_dict'])),
                          strict=True)
    return model.double(), g


def test_official_losses(golden_model):
    model, g = golden_model
    batch = []
    for size, boxes, labels, packed, shape in zip(g['image_sizes'], g['gt_boxes'],
                                                  g['gt_labels'], g['gt_masks_packed'],
                                                  g['gt_masks_shape']):
        batch.append(dict(image=torch.zeros(3, *size), instances=Instances(
            tuple(size), gt_boxes=Boxes(boxes.double()), gt_classes=labels - 1,  # official 1..K
            gt_masks=BitMasks(unpack(packed, shape)))))
    model.train()
    losses = model(batch)
    for ours, theirs in (('loss_fcos_cls', 'loss_cls'), ('loss_fcos_loc', 'loss_reg'),
                         ('loss_fcos_ctr', 'loss_centerness'), ('loss_mask', 'loss_mask')):
        got, want = float(losses[ours]), float(g['losses'][theirs])
        assert got == pytest.approx(want, rel=1e-5), (ours, got, want)


def test_official_detections_and_masks(golden_model):
    model, g = golden_model
    model.eval()
    with torch.no_grad():
        out = model([dict(image=torch.zeros(3, *s), height=o[0], width=o[1])
                     for s, o in zip(g['image_sizes'], g['original_sizes'])])
    for r, ref, (ih, iw), (oh, ow) in zip(out, g['detections'], g['image_sizes'],
                                          g['original_sizes']):
        r = r['instances']
        assert len(r) == len(ref['scores']) > 0
        assert torch.equal(r.pred_classes + 1, ref['labels'])
        assert float((r.scores - ref['scores']).abs().max()) < 1e-5
        want = ref['boxes'].double() * torch.tensor([ow / iw, oh / ih] * 2, dtype=torch.float64)
        assert float((r.pred_boxes.tensor.double() - want).abs().max()) < 1e-5 * float(
            want.abs().max())
        masks = unpack(ref['masks_packed'], ref['masks_shape'])
        assert r.pred_masks.shape == masks.shape
        assert int((r.pred_masks != masks).sum()) == 0


# ---------------------------------------------------------------------- checkpoints, configs
def r50_yaml_cfg():
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, 'embedmask_r50_1x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    return cfg


def test_released_checkpoint_loads_strictly():
    from insplug.converters import convert_state_dict
    from insplug.converters.embedmask import to_detectron2
    golden = torch.load(GOLDEN, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    official = {k[len('module.'):]: torch.randn(s, generator=gen) if s
                else torch.randn((), generator=gen)
                for k, s in golden['full_key_shapes'].items()}
    state = to_detectron2(convert_state_dict('embedmask', official))
    model = build_model(r50_yaml_cfg())
    ours = model.state_dict()
    assert set(state) == set(ours)
    assert all(state[k].shape == ours[k].shape for k in ours)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.embed_head.margin_scales[3].scale,
                       official['rpn.head.margin_scales.3.scale'].reshape(1))
    assert torch.equal(model.backbone.top_block.p7.weight,
                       official['backbone.fpn.top_blocks.p7.weight'])
    assert torch.equal(model.proposal_generator.fcos_head.ctrness.weight,
                       official['rpn.head.centerness.weight'])


def test_lazyconfig_builds_the_yaml_model(d2_shapes):
    from detectron2.config import LazyConfig, instantiate
    from test_d2_lazyconfig import load_on_demo, train_step_and_inference
    lazy = LazyConfig.load(osp.join(D2_CONFIGS, 'embedmask_r50_1x.py'))
    cfg = r50_yaml_cfg()
    a, b = instantiate(lazy.model), build_model(cfg)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    pa, pb = a.proposal_generator, b.proposal_generator
    assert (pa.strides, pa.regress_ranges, pa.center_sample_radius, pa.loss_opts,
            pa.test_opts) == (pb.strides, pb.regress_ranges, pb.center_sample_radius,
                              pb.loss_opts, pb.test_opts)
    for name in ('mask_scale_factor', 'box_padding', 'sample_in_mask', 'loss_mask_weight',
                 'mask_threshold', 'test_box_pad'):
        assert getattr(a, name) == getattr(b, name), name
    assert torch.equal(a.pixel_mean, b.pixel_mean)
    assert a.embed_head.proposal_margin_pred.bias[0] == b.embed_head.proposal_margin_pred.bias[0]
    assert lazy.optimizer.lr == cfg.SOLVER.BASE_LR and lazy.train.max_iter == cfg.SOLVER.MAX_ITER
    assert lazy.optimizer.params.bias_lr_factor == cfg.SOLVER.BIAS_LR_FACTOR
    assert lazy.optimizer.params.weight_decay_bias == cfg.SOLVER.WEIGHT_DECAY_BIAS
    assert lazy.optimizer.params.weight_decay_norm == cfg.SOLVER.WEIGHT_DECAY_NORM
    del a, b
    lazy = load_on_demo('embedmask_r50_1x.py', d2_shapes, 'model.proposal_generator.num_classes')
    lazy.model.proposal_generator.head.num_classes = 5
    _, _, losses = train_step_and_inference(lazy)
    assert set(losses) == LOSSES


@pytest.mark.parametrize('yaml_name,mm_path', [
    ('embedmask_r50_1x.yaml', 'embedmask/embedmask_r50_1x.py'),
    ('embedmask_r18_shapes.yaml', 'demo/embedmask_r18_shapes.py')])
def test_yaml_equals_mmdet_config(yaml_name, mm_path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from insplug.core.fcos import regress_ranges_from_sizes
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, yaml_name))
    m = Config.fromfile(osp.join(REPO, 'configs', *mm_path.split('/'))).model
    f, e, h = cfg.MODEL.INSPLUG.FCOS, cfg.MODEL.INSPLUG.EMBEDMASK, m.bbox_head
    assert f.NUM_CLASSES == h.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    assert list(f.FPN_STRIDES) == list(h.strides) and len(f.IN_FEATURES) == m.neck.num_outs
    assert f.TOP_LEVELS == m.neck.num_outs - 3 and m.neck.start_level == 0
    assert m.neck.add_extra_convs == 'on_output' and m.neck.relu_before_extra_convs
    assert cfg.MODEL.FPN.OUT_CHANNELS == m.neck.out_channels == h.in_channels == h.feat_channels
    ranges = h.get('regress_ranges') or regress_ranges_from_sizes(h.sizes_of_interest)
    ours = regress_ranges_from_sizes(f.SIZES_OF_INTEREST)
    assert [lo for lo, _ in ours] == [lo for lo, _ in ranges]
    assert [hi for hi, _ in ours][:-1] == [hi for hi, _ in ranges][:-1]  # last: INF vs 1e8
    assert f.NUM_CLS_CONVS == f.NUM_BOX_CONVS == h.stacked_convs
    assert f.NORM == h.norm_cfg.type and f.NORM_GROUPS == h.norm_cfg.num_groups
    assert f.USE_SCALE == h.get('use_scale', True)
    assert f.POS_RADIUS == h.get('center_sample_radius', 1.5) and f.LOC_LOSS_TYPE == h.get(
        'loss_type', 'giou')
    assert f.NORM_REG_TARGETS == h.get('norm_reg_targets', True)
    assert f.CENTERNESS_ON_REG == h.get('centerness_on_reg', True)
    tc = m.test_cfg
    assert f.INFERENCE_TH_TEST == tc.score_thr and f.PRE_NMS_TOPK_TEST == tc.nms_pre
    assert f.POST_NMS_TOPK_TEST == tc.max_per_img and f.NMS_TH == tc.nms.iou_threshold
    assert f.SCORE == tc.score
    for key, name in (('EMBED_DIM', 'embed_dim'), ('PER_DIM_MARGIN', 'per_dim_margin'),
                      ('PRIOR_MARGIN', 'prior_margin'),
                      ('MARGIN_REDUCE_FACTOR', 'margin_reduce_factor'),
                      ('EMBED_REDUCE_FACTOR', 'embed_reduce_factor'),
                      ('MASK_SCALE_FACTOR', 'mask_scale_factor'), ('BOX_PADDING', 'box_padding'),
                      ('SAMPLE_IN_MASK', 'sample_in_mask'),
                      ('LOSS_MASK_WEIGHT', 'loss_mask_weight'), ('MASK_THRESHOLD', 'mask_thr')):
        assert e[key] == h[name], key
    assert list(cfg.MODEL.PIXEL_MEAN) == list(m.data_preprocessor.mean)
    assert (cfg.INPUT.FORMAT == 'RGB') == m.data_preprocessor.get('bgr_to_rgb', False)
    assert cfg.MODEL.RESNETS.DEPTH == m.backbone.depth


def test_defaults_equal_mmdet_head_defaults():
    pytest.importorskip('mmdet')
    import inspect
    from insplug.mmdet.embedmask.head import EmbedMaskHead
    d = {k: p.default for k, p in inspect.signature(EmbedMaskHead.__init__).parameters.items()
         if p.default is not inspect.Parameter.empty}
    for k, v in EMBEDMASK_DEFAULTS.items():
        assert d[k] == v, k
    cfg = get_cfg()
    add_insplug_config(cfg)
    e = cfg.MODEL.INSPLUG.EMBEDMASK
    assert (e.MASK_SCALE_FACTOR, e.BOX_PADDING, e.MASK_THRESHOLD, e.TEST_BOX_PAD) == (
        d['mask_scale_factor'], d['box_padding'], d['mask_thr'], d['test_box_pad'])
