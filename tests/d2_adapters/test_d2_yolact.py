"""YOLACT / YOLACT++ through detectron2: the ``InsplugYOLACT`` meta-architecture.

* built from ``configs/detectron2/yolact_protonet_r18_shapes.yaml`` (YOLACT++ rescoring on), it
  runs a training step (five finite losses, gradients reach the head, the protonet and the
  mask-IoU net) and inference: ``Instances`` at the requested size with boolean image-sized
  masks, integer boxes inside the image, at most ``MAX_NUM`` detections, classes in range;
* the detectron2 and mmdet adapters (``configs/demo/yolact_protonet_r18_shapes.py``) with the same
  weights (the mmdet state_dict mapped by ``insplug.converters.yolact.to_detectron2``, loaded
  strictly) on the same padded batch: raw outputs (class / box / coefficient per prior,
  prototypes, semantic logits) and all five losses within 1e-6 (abs), the same detections,
  boxes, labels and scores (the d2 ``scores`` are the mmdet ``mask_scores``; ``box_scores`` the
  mmdet ``scores``) and masks with 0 differing pixels;
* the official golden data (tests/fixtures/official/yolact/{base,plus}.pt, recorded from
  dbolya/yolact): the official-layout state_dict converts (``yolact`` then ``to_detectron2``)
  and loads strictly into a detectron2 model with a detectron2 ResNet; training forward and every
  loss term match the release (1e-5 relative, as the mmdet parity test), and the post-processed
  detections (classes, box and mask scores, integer boxes, full-size masks with 0 differing
  pixels) too;
* the yamls and LazyConfigs equal the mmdet configs key by key;
* the R-50 LazyConfig trains one step and infers on demo images (stock instantiate pattern).
"""
import os.path as osp

import numpy as np
import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2 import

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import ImageList, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.converters import convert_state_dict  # noqa: E402
from insplug.converters.yolact import to_detectron2  # noqa: E402

CONFIG = 'yolact_protonet_r18_shapes.yaml'
LOSSES = {'loss_cls', 'loss_bbox', 'loss_mask', 'loss_segm', 'loss_mask_iou'}
FIX = osp.join(REPO, 'tests', 'fixtures', 'official', 'yolact')


def test_train_step_and_inference(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = model(first_batch(cfg, train=True, batch_size=2))
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    for p in (model.head.conv_coeff.weight, model.protonet.proto_conv.weight,
              model.mask_iou_net.net[0].weight, model.segm_conv.weight,
              model.backbone.stem.conv1.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0

    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    images[1]['height'], images[1]['width'] = 300, 200
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w)
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert 0 < len(inst) <= 50
        assert inst.pred_classes.max() < 5
        boxes = inst.pred_boxes.tensor
        assert torch.equal(boxes, boxes.trunc())
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h).all()
        assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0).all()
        assert inst.has('box_scores')  # YOLACT++: scores = mask scores


# --------------------------------------------------------------------------- mmdet agreement
def _mm_model():
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'yolact_protonet_r18_shapes.py'))
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model)


def _mm_samples(batch, pad_shape, out_shapes):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    samples = []
    for item, out in zip(batch, out_shapes):
        h, w = item['image'].shape[-2:]
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=out,
                                             pad_shape=pad_shape, batch_input_shape=pad_shape,
                                             scale_factor=(w / out[1], h / out[0])))
        gt = item['instances']
        # padded to the batch as mmdet's data preprocessor does (pad_mask=True)
        masks = np.zeros((len(gt), *pad_shape), dtype=np.uint8)
        masks[:, :h, :w] = gt.gt_masks.tensor.numpy()
        sample.gt_instances = InstanceData(
            labels=gt.gt_classes, bboxes=gt.gt_boxes.tensor.clone(),
            masks=BitmapMasks(masks, *pad_shape))
        samples.append(sample)
    return samples


def test_agreement_with_mmdet(d2_shapes, monkeypatch):
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    mm = _mm_model()
    d2 = build_model(cfg)
    d2.load_state_dict(to_detectron2(mm.state_dict()), strict=True)
    batch = first_batch(cfg, train=True, batch_size=2)
    # the second image cropped to 224 x 192: padding differs per image
    from detectron2.structures import BitMasks
    gt = batch[1]['instances']
    masks = gt.gt_masks.tensor[:, :224, :192]
    keep = masks.flatten(1).sum(1) > 20
    bm = BitMasks(masks[keep])
    batch[1] = dict(image=batch[1]['image'][:, :224, :192], instances=Instances(
        (224, 192), gt_classes=gt.gt_classes[keep], gt_masks=bm,
        gt_boxes=bm.get_bounding_boxes()))
    out_shapes = [(256, 256), (448, 384)]
    for item, (h, w) in zip(batch, out_shapes):
        item['height'], item['width'] = h, w
    images = d2.preprocess_image(batch)
    pad = tuple(images.tensor.shape[-2:])
    assert pad == (256, 256)
    samples = _mm_samples(batch, pad, out_shapes)

    monkeypatch.setattr(torch, 'randperm', lambda n, *a, **k: torch.arange(n - 1, -1, -1))
    d2.train()
    mm.train()
    torch.manual_seed(1)
    out = d2.forward_outputs(images.tensor)
    torch.manual_seed(1)
    feats = mm.extract_feat(images.tensor)
    cls_scores, bbox_preds, coeff_preds = mm.bbox_head(feats)
    protos, segm = mm.mask_head(feats)
    flat = mm.bbox_head._flatten
    diffs = {
        'cls': (out['cls'] - flat(cls_scores, 6)).abs().max(),
        'loc': (out['loc'] - flat(bbox_preds, 4)).abs().max(),
        'coeff': (out['coeff'] - flat(coeff_preds, 16)).abs().max(),
        'protos': (out['protos'] - protos).abs().max(),
        'segm': (out['segm'] - segm).abs().max(),
        'priors': (out['priors'] - mm.bbox_head.priors(
            [tuple(c.shape[-2:]) for c in cls_scores], out['priors'].device,
            out['priors'].dtype)).abs().max()}
    assert all(v <= 1e-6 for v in diffs.values()), diffs
    losses_d2 = d2.losses(out, [x['instances'] for x in batch], pad)
    losses_mm = mm.bbox_head.loss_by_feat(cls_scores, bbox_preds, coeff_preds,
                                          [s.gt_instances for s in samples],
                                          [s.metainfo for s in samples])
    losses_mm.update(mm.mask_head.loss_by_feat(protos, segm, [s.gt_instances for s in samples],
                                               [s.metainfo for s in samples],
                                               mm.bbox_head.get_positive_infos()))
    assert set(losses_d2) == set(losses_mm) == LOSSES
    for key in LOSSES:
        diffs[key] = abs(float(losses_d2[key]) - float(losses_mm[key]))
        assert diffs[key] <= 1e-6 * max(1.0, abs(float(losses_mm[key]))), key
    print('d2 vs mmdet YOLACT', {k: f'{float(v):.1e}' for k, v in diffs.items()})

    d2.eval()
    mm.eval()
    with torch.no_grad():
        out_d2 = d2([dict(image=x['image'], height=x['height'], width=x['width'])
                     for x in batch])
        out_mm = mm.predict(images.tensor, samples, rescale=True)
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b) > 0
        assert torch.equal(a.pred_classes, b.labels)
        torch.testing.assert_close(a.scores, b.mask_scores, rtol=0, atol=1e-6)
        torch.testing.assert_close(a.box_scores, b.scores, rtol=0, atol=1e-6)
        assert torch.equal(a.pred_boxes.tensor, b.bboxes)
        assert a.pred_masks.shape == b.masks.shape
        assert int((a.pred_masks != b.masks).sum()) == 0


# --------------------------------------------------------------------------- official golden
def _unpack(d):
    n = int(np.prod(d['shape']))
    bits = np.unpackbits(d['bits'].numpy())[:n]
    return torch.from_numpy(bits.astype(bool)).reshape(d['shape'])


def _tiny_d2_model(cfg):
    """The fixture's network in detectron2 parts: a torchvision-style ResNet-50 layout with one
    bottleneck per stage and widths / 8 (stem 64), the release's FPN, head and protonet."""
    from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
    from insplug.core.layers.protonet import ProtoNetEncoder
    from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet
    from insplug.core.prototypes.yolact_fpn import YolactFPNModule
    from insplug.core.prototypes.yolact_head import YolactPredictionHead
    from insplug.detectron2.yolact import InsplugYOLACT
    stages, in_ch = [], 64
    for i, b in enumerate((8, 16, 32, 64)):
        stages.append(ResNet.make_stage(BottleneckBlock, 1, stride_per_block=[1 if i == 0 else 2],
                                        in_channels=in_ch, bottleneck_channels=b,
                                        out_channels=4 * b, norm='BN', stride_in_1x1=False))
        in_ch = 4 * b
    backbone = ResNet(BasicStem(3, 64, norm='BN'), stages, out_features=['res3', 'res4', 'res5'])
    k, fpn = cfg['num_fg'], cfg['fpn_channels']
    return InsplugYOLACT(
        backbone=backbone, fpn=YolactFPNModule([64, 128, 256], fpn, 2),
        head=YolactPredictionHead(k, fpn, fpn, 1, cfg['num_protos'], cfg['pred_scales'],
                                  cfg['aspect_ratios'], cfg['img'], cfg['square_anchors']),
        protonet=ProtoNetEncoder(fpn, cfg['proto_channels'], cfg['num_protos']),
        in_features=['res3', 'res4', 'res5'], pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
        mask_iou_net=FastMaskIoUNet(k) if cfg['plus'] else None,
        loss_cfg=dict(masks_to_train=cfg['masks_to_train']),
        test_cfg=dict(score_thr=0.05, iou_thr=0.5, top_k=200, max_num=100))


def _close(a, b, rtol=1e-5, atol=1e-6):
    a, b = a.double(), b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, rtol=rtol, atol=atol), (a - b).abs().max()
    return float((a - b).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize('name', ['base', 'plus'])
def test_official_golden_in_detectron2(name, monkeypatch):
    g = torch.load(osp.join(FIX, f'{name}.pt'), weights_only=True)
    cfg = g['config']
    model = _tiny_d2_model(cfg)
    state = to_detectron2(convert_state_dict('yolact', g['state_dict']))
    model.load_state_dict(state, strict=True)
    model.double().train()
    img = g['inputs']['img'].double()
    n = cfg['img']
    out = model.forward_outputs(img)
    t, diffs = g['train'], {}
    diffs['proto'] = _close(out['protos'].permute(0, 2, 3, 1), t['proto'])
    diffs['segm'] = _close(out['segm'], t['segm'])
    diffs['conf'] = _close(torch.cat([out['cls'][..., -1:], out['cls'][..., :-1]], -1),
                           t['conf'])
    diffs['loc'] = _close(out['loc'], t['loc'])
    diffs['coeff'] = _close(out['coeff'], t['mask'])

    from detectron2.structures import BitMasks, Boxes
    gts, crowds = [], []
    for tgt, m, nc in zip(g['inputs']['targets'], g['inputs']['masks'],
                          g['inputs']['num_crowds']):
        keep = len(tgt) - nc
        gts.append(Instances((n, n), gt_boxes=Boxes(tgt[:keep, :4].double() * n),
                             gt_classes=tgt[:keep, 4].long(),
                             gt_masks=BitMasks(_unpack(m)[:keep])))
        crowds.append(tgt[keep:, :4].double() * n)
    monkeypatch.setattr(torch, 'randperm', lambda m, *a, **kw: torch.arange(m - 1, -1, -1))
    losses = model.losses(out, gts, (n, n), crowd_boxes=crowds)
    names = dict(B='loss_bbox', C='loss_cls', M='loss_mask', S='loss_segm', I='loss_mask_iou')
    assert set(g['losses']) == {key for key, v in names.items() if v in losses}
    for key, ref in g['losses'].items():
        diffs['loss_' + key] = _close(losses[names[key]], ref, rtol=1e-9, atol=1e-10)
    print(name, {key: f'{v:.1e}' for key, v in diffs.items()})
    if cfg['plus']:  # the release ran a second training forward (BN running statistics)
        model.forward_outputs(img)

    model.eval()
    inputs = [dict(image=None, height=h, width=w) for h, w in cfg['ori_shapes']]
    with torch.no_grad():
        results = model.inference(model.forward_outputs(img), inputs,
                                  ImageList(img, [(n, n)] * img.shape[0]))
    for res, post, (h, w) in zip(results, g['post'], cfg['ori_shapes']):
        res = res['instances']
        boxes = post['boxes']
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        assert torch.equal(res.pred_classes, post['classes'][keep])
        if cfg['plus']:
            _close(res.scores, post['mask_scores'][keep], rtol=1e-9, atol=1e-12)
            _close(res.box_scores, post['box_scores'][keep], rtol=1e-9, atol=1e-12)
        else:
            _close(res.scores, post['box_scores'][keep], rtol=1e-9, atol=1e-12)
        assert torch.equal(res.pred_boxes.tensor.long(), boxes[keep])
        masks = _unpack(post['masks'])[keep]
        assert res.pred_masks.shape == masks.shape == (len(masks), h, w)
        assert int((res.pred_masks != masks).sum()) == 0


# --------------------------------------------------------------------------- configs
def expected_from_mmdet(path):
    """{dotted detectron2 key: value} implied by an mmdet YOLACT config."""
    from mmengine.config import Config
    from insplug.detectron2.config import signature_defaults
    from insplug.mmdet.yolact.box_head import YOLACTBoxHead
    from insplug.mmdet.yolact.proto_mask_head import ProtoMaskHead
    from insplug.core.layers.protonet import ProtoNetEncoder
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    m = cfg.model
    p = 'MODEL.INSPLUG.YOLACT.'
    bh = dict(signature_defaults(YOLACTBoxHead), **m.bbox_head)
    mh = dict(signature_defaults(ProtoMaskHead), **m.mask_head)
    pn = dict(signature_defaults(ProtoNetEncoder), **mh['protonet'])
    tr, te = m.train_cfg, m.test_cfg
    out = {'MODEL.PIXEL_MEAN': list(m.data_preprocessor.mean),
           'MODEL.PIXEL_STD': list(m.data_preprocessor.std),
           'INPUT.FORMAT': 'RGB' if m.data_preprocessor.bgr_to_rgb else 'BGR',
           'MODEL.RESNETS.DEPTH': m.backbone.depth,
           'MODEL.BACKBONE.FREEZE_AT': m.backbone.frozen_stages + 1,
           'MODEL.RESNETS.NORM': 'BN' if not m.backbone.get('norm_eval', True) else 'FrozenBN',
           p + 'NUM_CLASSES': bh['num_classes'],
           p + 'FPN.OUT_CHANNELS': m.neck.out_channels, p + 'FPN.NUM_EXTRA': m.neck.num_extra,
           p + 'FPN.RELU_PRED_LAYERS': m.neck.get('relu_pred_layers', True),
           p + 'FPN.RELU_EXTRA': m.neck.get('relu_extra', False),
           p + 'HEAD.FEAT_CHANNELS': bh['feat_channels'],
           p + 'HEAD.NUM_HEAD_CONVS': bh['num_head_convs'],
           p + 'HEAD.NUM_PROTOS': bh['num_protos'],
           p + 'HEAD.PRIOR_SCALES': [list(s) for s in bh['prior_scales']],
           p + 'HEAD.PRIOR_RATIOS': list(bh['prior_ratios']),
           p + 'HEAD.PRIOR_MAX_SIZE': bh['prior_max_size'],
           p + 'HEAD.SQUARE_ANCHORS': bh['square_anchors'],
           p + 'PROTONET.FEAT_CHANNELS': pn['feat_channels'],
           p + 'PROTONET.NUM_CONVS': pn['num_convs'],
           p + 'PROTONET.IN_LEVELS': list(pn['in_levels']),
           p + 'PROTONET.PROTO_ACTIVATION': pn['proto_activation'],
           p + 'PROTONET.INIT': pn['init'], p + 'PROTONET.NORM': pn['norm'],
           p + 'WITH_SEG_BRANCH': mh['with_seg_branch'],
           p + 'WITH_MASK_IOU': mh['with_mask_iou'],
           p + 'LOSS.POS_IOU_THR': tr.pos_iou_thr, p + 'LOSS.NEG_IOU_THR': tr.neg_iou_thr,
           p + 'LOSS.CROWD_IOU_THR': tr.crowd_iou_thr,
           p + 'LOSS.NEG_POS_RATIO': tr.neg_pos_ratio,
           p + 'LOSS.CLS_WEIGHT': bh['loss_cls_weight'],
           p + 'LOSS.BBOX_WEIGHT': bh['loss_bbox_weight'],
           p + 'LOSS.MASK_WEIGHT': mh['loss_mask_weight'],
           p + 'LOSS.MASKS_TO_TRAIN': mh['max_masks_to_train'],
           p + 'LOSS.CROP_PADDING': mh['crop_padding'],
           p + 'LOSS.SEGM_WEIGHT': mh['loss_segm_weight'],
           p + 'LOSS.MASK_IOU_WEIGHT': mh['loss_mask_iou_weight'],
           p + 'LOSS.DISCARD_MASK_AREA': mh['discard_mask_area'],
           p + 'LOSS.DETACH_MASK_IOU_INPUT': mh['detach_mask_iou_input'],
           p + 'TEST.SCORE_THR': te.score_thr, p + 'TEST.IOU_THR': te.iou_thr,
           p + 'TEST.TOP_K': te.top_k, p + 'TEST.MAX_NUM': te.max_per_img,
           p + 'TEST.SECOND_THRESHOLD': te.second_threshold, p + 'TEST.MASK_THR': te.mask_thr,
           p + 'TEST.RESCORE_BBOX': te.rescore_bbox,
           p + 'TEST.INTEGER_BOXES': te.integer_boxes, p + 'TEST.DROP_EMPTY': te.drop_empty}
    dcn = m.backbone.get('stage_with_dcn')
    out['MODEL.RESNETS.DEFORM_ON_PER_STAGE'] = list(dcn) if dcn else [False] * 4
    opt = cfg.optim_wrapper.optimizer
    out['SOLVER.BASE_LR'] = opt.lr
    out['SOLVER.WEIGHT_DECAY'] = opt.weight_decay
    out['SOLVER.IMS_PER_BATCH'] = cfg.train_dataloader.batch_size
    if opt.type == 'SGD':
        out['SOLVER.MOMENTUM'] = opt.momentum
    out['MODEL.INSPLUG.SOLVER.OPTIMIZER'] = 'ADAMW' if opt.type == 'AdamW' else opt.type
    return out


def _get(cfg, dotted):
    for key in dotted.split('.'):
        cfg = cfg[key]
    return [list(x) if isinstance(x, tuple) else x for x in cfg] \
        if isinstance(cfg, (list, tuple)) else cfg


PAIRS = [('yolact_r50_coco.yaml', 'yolact/yolact_r50_coco.py'),
         ('yolact_plus_r50_coco.yaml', 'yolact/yolact_plus_r50_coco.py'),
         (CONFIG, 'demo/yolact_protonet_r18_shapes.py')]


@pytest.mark.parametrize('yaml,mm_path', PAIRS)
def test_yaml_equals_mmdet_config(yaml, mm_path):
    pytest.importorskip('mmdet')
    from insplug.detectron2.train_net import setup_cfg
    cfg = setup_cfg(osp.join(D2_CONFIGS, yaml))
    expected = expected_from_mmdet(mm_path)
    diff = {key: (_get(cfg, key), v) for key, v in expected.items() if _get(cfg, key) != v}
    assert not diff, diff


def test_config_defaults_are_the_mmdet_adapters():
    """The yacs defaults (from the core) equal the mmdet heads' defaults."""
    pytest.importorskip('mmdet')
    from insplug.detectron2.config import signature_defaults
    from insplug.detectron2.yolact import YOLACT_MODEL_DEFAULTS
    from insplug.mmdet.yolact.box_head import YOLACTBoxHead
    from insplug.mmdet.yolact.proto_mask_head import ProtoMaskHead
    from insplug.core.prototypes.yolact_head import YolactPredictionHead
    head, box = signature_defaults(YolactPredictionHead), signature_defaults(YOLACTBoxHead)
    for key in ('feat_channels', 'num_head_convs', 'num_protos', 'prior_ratios',
                'prior_max_size', 'square_anchors'):
        assert head[key] == box[key], key
    assert [list(s) for s in head['prior_scales']] == [list(s) for s in box['prior_scales']]
    mask = signature_defaults(ProtoMaskHead)
    for key, value in YOLACT_MODEL_DEFAULTS.items():
        assert mask[key] == value, key


@pytest.mark.parametrize('lazy,mm_path', [('yolact_r50_coco.py', 'yolact/yolact_r50_coco.py'),
                                          ('yolact_plus_r50_coco.py',
                                           'yolact/yolact_plus_r50_coco.py')])
def test_lazyconfig_equals_yaml_and_mmdet(lazy, mm_path):
    pytest.importorskip('mmdet')
    from insplug.detectron2.train_net import setup_cfg
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, lazy))
    model = instantiate(cfg.model)
    ref = build_model(setup_cfg(osp.join(D2_CONFIGS, lazy.replace('.py', '.yaml')),
                                ['MODEL.DEVICE', 'cpu']))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    assert model.loss_cfg == ref.loss_cfg and model.test_cfg == ref.test_cfg
    for attr in ('prior_scales', 'prior_ratios', 'prior_max_size', 'square_anchors'):
        assert getattr(model.head, attr) == getattr(ref.head, attr), attr
    assert model.pixel_mean.flatten().tolist() == ref.pixel_mean.flatten().tolist()
    assert model.pixel_std.flatten().tolist() == ref.pixel_std.flatten().tolist()
    assert [type(m).__name__ for m in model.modules()] == \
        [type(m).__name__ for m in ref.modules()]
    assert [(k, p.requires_grad) for k, p in model.named_parameters()] == \
        [(k, p.requires_grad) for k, p in ref.named_parameters()]
    expected = expected_from_mmdet(mm_path)
    assert cfg.optimizer.lr == expected['SOLVER.BASE_LR']
    assert cfg.optimizer.weight_decay == expected['SOLVER.WEIGHT_DECAY']
    assert cfg.optimizer.momentum == expected['SOLVER.MOMENTUM']
    assert cfg.dataloader.train.total_batch_size == expected['SOLVER.IMS_PER_BATCH']
    assert cfg.dataloader.train.mapper.image_format == expected['INPUT.FORMAT']


def test_lazyconfig_train_step_and_inference(d2_shapes):
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L
    from detectron2.evaluation import COCOEvaluator
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, 'yolact_r50_coco.py'))
    cfg = LazyConfig.apply_overrides(cfg, [
        f'dataloader.train.dataset.names={d2_shapes["train"]}',
        f'dataloader.test.dataset.names={d2_shapes["val"]}',
        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
        'dataloader.test.num_workers=0', 'model.head.num_classes=5',
        'dataloader.train.mapper.instance_mask_format=bitmask'])
    cfg.dataloader.train.mapper.augmentations = [L(T.Resize)(shape=(128, 128))]
    cfg.dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(128, 128))]
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    assert model.num_classes == 5
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == LOSSES - {'loss_mask_iou'}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    model.eval()
    test = next(iter(instantiate(cfg.dataloader.test)))
    with torch.no_grad():
        out = model(test)[0]['instances']
    assert out.image_size == (test[0]['height'], test[0]['width'])
    assert out.pred_masks.shape[-2:] == out.image_size and out.pred_masks.dtype == torch.bool
    assert isinstance(instantiate(cfg.dataloader.evaluator), COCOEvaluator)


def test_official_checkpoint_file_to_detectron2(tmp_path):
    """The release's file (a bare ``Yolact.state_dict()``) -> ``convert_checkpoint_to_detectron2``
    (``tools/convert_checkpoint.py yolact IN OUT --to detectron2``) -> detectron2's checkpointer
    (weights-only): the same prototypes as the strictly loaded golden weights."""
    from insplug.converters.to_detectron2 import convert_checkpoint_to_detectron2
    from insplug.detectron2.checkpoint import SafeDetectionCheckpointer
    g = torch.load(osp.join(FIX, 'plus.pt'), weights_only=True)
    src, dst = tmp_path / 'yolact_plus.pth', tmp_path / 'd2.pth'
    torch.save(g['state_dict'], src)
    convert_checkpoint_to_detectron2('yolact', str(src), str(dst))
    strict = _tiny_d2_model(g['config']).eval()
    strict.load_state_dict(torch.load(dst, weights_only=True)['model'], strict=True)
    fresh = _tiny_d2_model(g['config']).eval()
    SafeDetectionCheckpointer(fresh).load(str(dst))
    with torch.no_grad():
        a = fresh.forward_outputs(g['inputs']['img'].float())
        b = strict.forward_outputs(g['inputs']['img'].float())
    for key in ('cls', 'loc', 'coeff', 'protos'):
        assert torch.equal(a[key], b[key]), key
