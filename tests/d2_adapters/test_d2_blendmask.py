"""BlendMask through detectron2: the ``InsplugBlendMask`` meta-architecture.

* built from ``configs/detectron2/blendmask_r18_shapes.yaml`` it trains one step (the five
  AdelaiDet losses finite, gradients reach the FCOS head, the top layer, the bases and the
  semantic head) and infers on demo images (image-sized bool masks, boxes, sorted scores);
* official golden data (``tests/fixtures/official/blendmask/golden.pt``, AdelaiDet's BlendMask
  run by ``tools/official_parity/make_blendmask_golden.py``): the official-layout state_dict goes
  through ``convert_blendmask`` + ``to_detectron2`` and loads STRICTLY into the detectron2
  model; on the official FPN features the five losses (float64) are within 1e-5 of AdelaiDet's,
  and the final detections (float32: boxes, scores, classes within 1e-5; masks pasted at 2x
  with 0 differing pixels) equal AdelaiDet's; the full R-50 key list loads strictly into the
  model of ``blendmask_r50_1x.yaml``;
* the mmdet and detectron2 adapters, sharing weights (``to_detectron2``), agree on the same
  batch: every loss within 1e-5, and the final detections and masks (0 differing pixels);
* the yaml files carry the mmdet configs' values key by key.
"""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_model  # noqa: E402
from detectron2.structures import Boxes, Instances, PolygonMasks  # noqa: E402

from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.blendmask import (BLENDMASK_DEFAULTS, InsplugBasisModule,  # noqa: E402
                                          InsplugBlendMask)
from insplug.detectron2.fcos import InsplugFCOS  # noqa: E402

CONFIG = 'blendmask_r18_shapes.yaml'
LOSSES = {'loss_fcos_cls', 'loss_fcos_loc', 'loss_fcos_ctr', 'loss_mask', 'loss_basis_sem'}
MM_NAMES = {'loss_cls': 'loss_fcos_cls', 'loss_bbox': 'loss_fcos_loc',
            'loss_centerness': 'loss_fcos_ctr', 'loss_mask': 'loss_mask',
            'loss_basis_sem': 'loss_basis_sem'}
GOLDEN = osp.join(REPO, 'tests', 'fixtures', 'official', 'blendmask', 'golden.pt')


def test_registered():
    assert META_ARCH_REGISTRY.get('InsplugBlendMask') is InsplugBlendMask


@pytest.fixture(scope='module')
def model_cfg(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes, 'MODEL.INSPLUG.FCOS.INFERENCE_TH_TEST', 0.0)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_train_step_and_inference(model_cfg):
    model, cfg = model_cfg
    model.train()
    losses = model(first_batch(cfg, train=True, batch_size=2))
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    for p in (model.proposal_generator.fcos_head.cls_logits.weight, model.top_layer.weight,
              model.basis_module.bottom_module.proto_conv.weight,
              model.basis_module.semantic_head.net[-1].weight,
              model.backbone.bottom_up.stem.conv1.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0

    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w)
        assert 0 < len(inst) <= 50
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        assert inst.pred_classes.max() < 5
        box = inst.pred_boxes.tensor
        assert (box[:, 0] >= 0).all() and (box[:, 2] <= w).all() and (box[:, 3] <= h).all()


# ---------------------------------------------------------------------- official golden data
class FixedFeatures(Backbone):
    """Returns the official FPN features whatever the input."""

    def __init__(self, feats, channels):
        super().__init__()
        self.feats = feats
        self.shapes = {f'p{i + 3}': ShapeSpec(channels=channels, stride=2 ** (i + 3))
                       for i in range(len(feats))}

    def forward(self, x):
        return dict(zip(self.shapes, self.feats))

    def output_shape(self):
        return self.shapes


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


def golden_model(g, dtype):
    c = g['config']
    cfg = get_cfg()
    add_insplug_config(cfg)
    f = cfg.MODEL.INSPLUG.FCOS
    f.NUM_CLASSES = c['num_classes']
    f.FPN_STRIDES = list(c['strides'])
    f.SIZES_OF_INTEREST = list(c['sizes_of_interest'])
    f.NUM_CLS_CONVS = f.NUM_BOX_CONVS = c['num_convs']
    f.USE_SCALE = False
    f.THRESH_WITH_CTR = True
    f.INFERENCE_TH_TEST = c['score_thr']
    f.PRE_NMS_TOPK_TEST = c['nms_pre']
    f.NMS_TH = c['nms_thr']
    f.POST_NMS_TOPK_TEST = c['max_per_img']
    backbone = FixedFeatures([x.to(dtype) for x in g['features']], c['channels'])
    top = torch.nn.Conv2d(c['channels'], c['num_bases'] * c['attn_size'] ** 2, 3, padding=1)
    model = InsplugBlendMask(
        backbone=backbone, proposal_generator=InsplugFCOS(cfg, backbone.output_shape()),
        basis_module=InsplugBasisModule(c['channels'], c['num_classes'], c['num_bases'],
                                        c['basis_channels'], 3, 3, 'BN', True),
        basis_in_features=['p3', 'p4', 'p5'], top_layer=top, attn_size=c['attn_size'],
        bottom_resolution=c['bottom_resolution'], semantic_loss_weight=c['sem_loss_weight'])
    from insplug.converters import convert_state_dict
    from insplug.converters.blendmask import to_detectron2
    state = to_detectron2(convert_state_dict('blendmask', g['state_dict']))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not missing  # strict, apart from the fixed features
    # official keys kept their names
    assert set(state) - {k for k in state if k.startswith('basis_module.')} == \
        {k for k in g['state_dict'] if not k.startswith('basis_module.')}
    return model.to(dtype)


def golden_inputs(g, train):
    s = g['config']['out_scale']
    out = []
    for i, (size, objs) in enumerate(zip(g['image_sizes'], g['objects'])):
        item = dict(image=torch.zeros(3, *size), height=size[0] * s, width=size[1] * s)
        if train:
            kept = [o for o in objs if not o['iscrowd']]
            item['instances'] = Instances(
                tuple(size), gt_boxes=Boxes(g['gt_boxes'][i].float()),
                gt_classes=g['gt_labels'][i].long(),
                gt_masks=PolygonMasks([[np.asarray(p, dtype=np.float64)
                                        for p in o['polygons']] for o in kept]))
            item['basis_sem'] = g['basis_sem'][i]  # AdelaiDet's map (crowd included)
        out.append(item)
    return out


def unpack_masks(p):
    bits = np.unpackbits(p['masks_packed'].numpy(), axis=1)
    n = int(np.prod(p['masks_shape'][1:]))
    return torch.from_numpy(bits[:, :n].astype(bool)).reshape(p['masks_shape'])


def test_official_losses(golden):
    model = golden_model(golden, torch.float64).train()
    losses = model(golden_inputs(golden, train=True))
    assert set(losses) == LOSSES == set(golden['losses'])
    for k in LOSSES:
        assert abs(float(losses[k]) - float(golden['losses'][k])) < 1e-5, k


def test_official_inference(golden):
    model = golden_model(golden, torch.float32).eval()
    with torch.no_grad():
        outputs = model(golden_inputs(golden, train=False))
    for out, p in zip(outputs, golden['pred']):
        r = out['instances']
        assert len(r) == len(p['scores']) > 0
        assert torch.equal(r.pred_classes, p['labels'])
        assert (r.scores - p['scores']).abs().max() < 1e-5
        assert (r.pred_boxes.tensor - p['boxes']).abs().max() < 1e-5
        masks = unpack_masks(p)
        assert r.pred_masks.shape == masks.shape
        assert int((r.pred_masks != masks).sum()) == 0


def test_official_full_r50_checkpoint_loads_strictly(golden):
    from insplug.converters import convert_state_dict
    from insplug.converters.blendmask import to_detectron2
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, 'blendmask_r50_1x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    model = build_model(cfg)
    official = {k: torch.zeros(s) for k, s in golden['full_r50_keys'].items()}
    state = to_detectron2(convert_state_dict('blendmask', official))
    ours = model.state_dict()
    assert set(state) == set(ours)
    assert all(state[k].shape == ours[k].shape for k in ours)
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------- mmdet agreement
@pytest.fixture(scope='module')
def twins(d2_shapes):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.converters.blendmask import to_detectron2
    from insplug.registry import MODELS
    cfg = d2_cfg(CONFIG, d2_shapes, 'MODEL.INSPLUG.FCOS.INFERENCE_TH_TEST', 0.2)
    d2_model = build_model(cfg)
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'blendmask_r18_shapes.py'))
    mm_cfg.model.test_cfg.score_thr = 0.2
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_model = MODELS.build(mm_cfg.model)
    mm_model.init_weights()
    with torch.no_grad():  # the class logits away from the prior, so there are detections,
        mm_model.bbox_head.conv_cls.bias.normal_(0, 1)
        mm_model.bbox_head.conv_reg.bias.fill_(2.0)  # boxes of 4 strides
        # and bases / attentions that vary, so the masks are neither empty nor full
        mm_model.mask_head.bottom_module.proto_conv.weight.normal_(0, 1)
        mm_model.mask_head.bottom_module.proto_conv.bias.normal_(0.5, 1)
        mm_model.bbox_head.top_layer.weight.normal_(0, 0.1)
    missing, unexpected = d2_model.load_state_dict(to_detectron2(mm_model.state_dict()),
                                                   strict=False)
    assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing)
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    return SimpleNamespace(d2=d2_model, mm=mm_model, batch=batch, cfg=cfg)


def mmdet_samples(batch, pad_shape):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    samples = []
    for item in batch:
        h, w = item['image'].shape[-2:]
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=pad_shape, batch_input_shape=pad_shape,
                                             scale_factor=(1.0, 1.0)))
        gt = item['instances']
        masks = gt.gt_masks.tensor.numpy().astype(np.uint8)
        sample.gt_instances = InstanceData(labels=gt.gt_classes,
                                           masks=BitmapMasks(masks, h, w),
                                           bboxes=gt.gt_boxes.tensor)
        samples.append(sample)
    return samples


def test_agreement_with_mmdet(twins):
    t = twins
    images = t.d2.preprocess_image(t.batch)
    samples = mmdet_samples(t.batch, tuple(images.tensor.shape[-2:]))
    t.d2.train()
    t.mm.train()
    losses_d2 = t.d2(t.batch)
    losses_mm = t.mm.loss(images.tensor, samples)
    assert set(losses_mm) == set(MM_NAMES) and set(losses_d2) == LOSSES
    for k, v in MM_NAMES.items():
        assert abs(float(losses_d2[v]) - float(losses_mm[k])) < 1e-5, (k, losses_d2[v],
                                                                       losses_mm[k])
    t.d2.eval()
    t.mm.eval()
    with torch.no_grad():
        out_d2 = t.d2([dict(image=x['image'], height=x['height'], width=x['width'])
                       for x in t.batch])
        out_mm = t.mm.predict(images.tensor, samples, rescale=True)
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
        assert torch.equal(a.pred_classes, b.labels)
        torch.testing.assert_close(a.pred_boxes.tensor, b.bboxes, rtol=0, atol=1e-4)
        assert a.pred_masks.shape == b.masks.shape
        assert int((a.pred_masks != b.masks).sum()) == 0
        assert 0 < int(a.pred_masks.sum()) < a.pred_masks.numel() // 2


# ---------------------------------------------------------------------- configs
def _mm(path):
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, 'configs', *path.split('/'))).model


@pytest.mark.parametrize('yaml_name,mm_path', [
    ('blendmask_r50_1x.yaml', 'blendmask/blendmask_r50_1x.py'),
    ('blendmask_r18_shapes.yaml', 'demo/blendmask_r18_shapes.py')])
def test_yaml_equals_mmdet_config(yaml_name, mm_path):
    pytest.importorskip('mmdet')
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, yaml_name))
    m = _mm(mm_path)
    f, b, bh, mh = cfg.MODEL.INSPLUG.FCOS, cfg.MODEL.INSPLUG.BLENDMASK, m.bbox_head, m.mask_head
    assert f.NUM_CLASSES == bh.num_classes == mh.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    assert list(f.FPN_STRIDES) == list(bh.strides)
    assert len(f.IN_FEATURES) == len(bh.strides) == m.neck.num_outs
    assert f.TOP_LEVELS == m.neck.num_outs - 3 and m.neck.start_level == 1
    assert m.neck.add_extra_convs == 'on_output' and m.neck.relu_before_extra_convs
    assert cfg.MODEL.FPN.OUT_CHANNELS == m.neck.out_channels == bh.in_channels \
        == bh.feat_channels
    assert tuple(f.SIZES_OF_INTEREST) == tuple(bh.sizes_of_interest)
    assert f.NUM_CLS_CONVS == f.NUM_BOX_CONVS == bh.stacked_convs
    assert f.NORM == bh.norm_cfg.type and f.NORM_GROUPS == bh.norm_cfg.num_groups
    assert f.USE_SCALE == bh.get('use_scale', False) is False
    assert f.NORM_REG_TARGETS == bh.norm_reg_targets and f.CENTERNESS_ON_REG
    assert f.POS_RADIUS == bh.center_sample_radius and f.LOC_LOSS_TYPE == bh.loss_type
    assert f.IOU_SMOOTH == bh.iou_smooth
    assert (f.LOSS_ALPHA, f.LOSS_GAMMA) == (bh.focal_alpha, bh.focal_gamma)
    tc = m.test_cfg
    assert f.INFERENCE_TH_TEST == tc.score_thr and f.PRE_NMS_TOPK_TEST == tc.nms_pre
    assert f.POST_NMS_TOPK_TEST == tc.max_per_img and f.NMS_TH == tc.nms.iou_threshold
    assert f.THRESH_WITH_CTR == tc.thresh_with_ctr and f.SCORE == tc.score
    assert b.MASK_THRESHOLD == tc.mask_thr
    assert b.ATTN_SIZE == bh.attn_size == mh.attn_size
    assert b.BASIS.NUM_BASES == bh.num_bases == mh.num_bases == mh.bottom_module.num_protos
    assert b.BOTTOM_RESOLUTION == mh.bottom_resolution
    assert b.POOLER_SAMPLING_RATIO == mh.pooler_sampling_ratio
    assert b.BASES_STRIDE == mh.bases_stride
    assert b.INSTANCE_LOSS_WEIGHT == mh.loss_mask_weight
    assert b.BASIS.LOSS_WEIGHT == mh.semantic_loss_weight and b.BASIS.LOSS_ON
    assert b.BASIS.SEMANTIC_STRIDE == mh.semantic_stride
    assert b.BASIS.CONVS_DIM == mh.bottom_module.feat_channels == mh.semantic_feat_channels
    assert b.BASIS.NUM_CONVS == mh.bottom_module.num_convs
    assert b.BASIS.NORM == ('SyncBN' if mh.bottom_sync_bn == 'auto' else 'BN')
    assert mh.bottom_module.norm == 'BN' and mh.bottom_last_init == 'pytorch'
    assert list(b.BASIS.IN_FEATURES) == ['p3', 'p4', 'p5'] \
        and tuple(mh.bottom_module.in_levels) == (0, 1, 2)
    assert list(cfg.MODEL.PIXEL_MEAN) == list(m.data_preprocessor.mean)
    assert list(cfg.MODEL.PIXEL_STD) == list(m.data_preprocessor.std)
    assert (cfg.INPUT.FORMAT == 'RGB') == m.data_preprocessor.get('bgr_to_rgb', False)
    assert cfg.MODEL.RESNETS.DEPTH == m.backbone.depth


def test_defaults_equal_mmdet_head_defaults():
    pytest.importorskip('mmdet')
    import inspect
    from insplug.mmdet.blendmask.blendmask import BlendMaskHead
    d = {k: p.default for k, p in inspect.signature(BlendMaskHead.__init__).parameters.items()
         if p.default is not inspect.Parameter.empty}
    assert BLENDMASK_DEFAULTS['num_bases'] == d['num_bases']
    assert BLENDMASK_DEFAULTS['bases_stride'] == d['bases_stride']
    assert BLENDMASK_DEFAULTS['semantic_stride'] == d['semantic_stride']
    assert BLENDMASK_DEFAULTS['loss_mask_weight'] == d['loss_mask_weight']
    assert BLENDMASK_DEFAULTS['convs_dim'] == d['semantic_feat_channels']
    node = get_cfg()
    add_insplug_config(node)
    b = node.MODEL.INSPLUG.BLENDMASK
    assert (b.ATTN_SIZE, b.BOTTOM_RESOLUTION, b.POOLER_SAMPLING_RATIO) == (
        d['attn_size'], d['bottom_resolution'], d['pooler_sampling_ratio'])
    assert b.BASIS.LOSS_WEIGHT == d['semantic_loss_weight']


def test_lazyconfig_builds_trains_and_equals_yaml(d2_shapes):
    from detectron2.config import LazyConfig, instantiate
    from test_d2_lazyconfig import load_on_demo, train_step_and_inference
    lazy = LazyConfig.load(osp.join(D2_CONFIGS, 'blendmask_r50_1x.py'))
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, 'blendmask_r50_1x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    # the LazyConfig builds the same model as the yaml: same keys, shapes and hyper-parameters
    torch.manual_seed(0)
    a, b = instantiate(lazy.model), build_model(cfg)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    pa, pb = a.proposal_generator, b.proposal_generator
    assert (pa.strides, pa.regress_ranges, pa.center_sample_radius, pa.loss_opts,
            pa.test_opts) == (pb.strides, pb.regress_ranges, pb.center_sample_radius,
                              pb.loss_opts, pb.test_opts)
    for name in ('attn_size', 'bottom_resolution', 'bases_stride', 'pooler_sampling_ratio',
                 'instance_loss_weight', 'semantic_loss_weight', 'semantic_stride',
                 'mask_threshold', 'basis_in_features'):
        assert getattr(a, name) == getattr(b, name), name
    assert torch.equal(a.pixel_mean, b.pixel_mean) and torch.equal(a.pixel_std, b.pixel_std)
    assert a.proposal_generator.fcos_head.scales is None
    assert lazy.optimizer.lr == cfg.SOLVER.BASE_LR and lazy.train.max_iter == cfg.SOLVER.MAX_ITER
    assert list(lazy.lr_multiplier.scheduler.milestones[:2]) == list(cfg.SOLVER.STEPS)
    assert lazy.dataloader.train.total_batch_size == cfg.SOLVER.IMS_PER_BATCH
    del a, b
    # one training step and inference on the demo images (128 px)
    lazy = load_on_demo('blendmask_r50_1x.py', d2_shapes, 'model.proposal_generator.num_classes')
    lazy.model.proposal_generator.head.num_classes = 5
    lazy.model.basis_module.num_classes = 5
    model, _, losses = train_step_and_inference(lazy)
    assert set(losses) == LOSSES
