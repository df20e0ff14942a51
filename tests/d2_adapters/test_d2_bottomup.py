"""Bottom-up models through detectron2: ``InsplugSpatialEmbeddings``, ``InsplugDiscriminative``
(META_ARCH) and ``build_insplug_erfnet_backbone`` (BACKBONE).

* built from the shapes yamls, each model runs a training step (finite losses, gradients reach
  the output layers and the ERFNet encoder) and inference: ``Instances`` at the requested output
  size with boolean image-sized masks, boxes equal to the masks' tight boxes (numpy), scores
  sorted, classes in range;
* the detectron2 and mmdet adapters, given the same weights (the mmdet state_dict mapped by
  ``insplug.converters.spatialembeddings.to_detectron2``, loaded strictly) and the same padded
  batch of two images of different sizes: raw outputs equal (abs 1e-6), every loss term equal
  (abs 1e-6), final masks with 0 differing pixels, same scores / labels / boxes;
* the official SpatialEmbeddings golden state_dict (tests/fixtures/official/spatialembeddings)
  converts (``spatialembeddings`` then ``to_detectron2``) and loads strictly into the detectron2
  model; its output equals the official network's (abs 1e-5);
* every yaml and LazyConfig equals its mmdet config key by key (model, loss, clustering, test,
  input normalisation, optimizer lr / weight decay, batch size);
* the LazyConfigs train one step and infer on demo images with the stock instantiate pattern.
"""
import os.path as osp

import numpy as np
import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.converters import convert_state_dict  # noqa: E402
from insplug.converters.spatialembeddings import to_detectron2  # noqa: E402
from insplug.detectron2.bottomup import CLUSTERERS  # noqa: E402

MODELS = {
    'spatialembeddings': ('spatialembeddings_erfnet_shapes.yaml',
                          'demo/spatialembeddings_erfnet_shapes.py',
                          {'loss_instance', 'loss_sigma', 'loss_seed'}),
    'discriminative': ('discriminative_erfnet_shapes.yaml', 'demo/discriminative_erfnet_shapes.py',
                       {'loss_var', 'loss_dist', 'loss_reg', 'loss_semantic'}),
}


def tight_boxes(masks):
    """numpy reference: (n, 4) x1, y1, x2 + 1, y2 + 1 of each mask's foreground pixels."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def shapes_batch(cfg, train=True, n=2):
    """Demo images at 128 px (the configs' size), no flip."""
    from detectron2.data import DatasetCatalog, DatasetMapper, get_detection_dataset_dicts
    import detectron2.data.transforms as T
    dicts = (get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=True) if train
             else DatasetCatalog.get(cfg.DATASETS.TEST[0]))
    mapper = DatasetMapper(cfg, is_train=train,
                           augmentations=[T.ResizeShortestEdge(128, 128)])
    return [mapper(dict(d)) for d in dicts[:n]]


@pytest.mark.parametrize('name', sorted(MODELS))
def test_train_step_and_inference(name, d2_shapes):
    cfg = d2_cfg(MODELS[name][0], d2_shapes)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    losses = model(shapes_batch(cfg, True, 2))
    assert set(losses) == MODELS[name][2]
    assert all(torch.isfinite(v) for v in losses.values()), losses
    model.zero_grad()
    sum(losses.values()).backward()
    out_layer = model.outputs.seed if name == 'spatialembeddings' else model.outputs.semantic
    assert out_layer.conv.weight.grad.abs().sum() > 0
    assert model.backbone.encoder.layers[0].conv.weight.grad.abs().sum() > 0

    model.eval()
    images = shapes_batch(cfg, False, 2)
    images[1]['height'], images[1]['width'] = 200, 180  # another output size
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w)
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert set(inst.get_fields()) == {'pred_masks', 'pred_boxes', 'scores', 'pred_classes'}
        assert len(inst) <= 100
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        if len(inst):
            assert 0 <= inst.pred_classes.min() and inst.pred_classes.max() < 5
            assert inst.pred_masks.flatten(1).any(1).all()
        np.testing.assert_array_equal(inst.pred_boxes.tensor.numpy(),
                                      tight_boxes(inst.pred_masks.numpy()))


def test_image_without_instances(d2_shapes):
    cfg = d2_cfg(MODELS['spatialembeddings'][0], d2_shapes)
    model = build_model(cfg).train()
    batch = shapes_batch(cfg, True, 1)
    h, w = batch[0]['image'].shape[-2:]
    batch[0]['instances'] = Instances((h, w), gt_classes=torch.zeros(0, dtype=torch.int64),
                                      gt_masks=BitMasks(torch.zeros(0, h, w, dtype=torch.bool)))
    losses = model(batch)
    assert float(losses['loss_instance']) == float(losses['loss_sigma']) == 0.0
    assert float(losses['loss_seed']) > 0
    sum(losses.values()).backward()


# --------------------------------------------------------------------------- mmdet agreement
def _mmdet_model(path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS as MM
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    with DefaultScope.overwrite_default_scope('insplug'):
        return MM.build(cfg.model), cfg


def _mmdet_samples(batch, pad_shape, out_shapes):
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
        masks = gt.gt_masks.tensor.numpy().astype(np.uint8)
        sample.gt_instances = InstanceData(labels=gt.gt_classes,
                                           masks=BitmapMasks(masks, h, w),
                                           bboxes=torch.as_tensor(tight_boxes(masks)))
        samples.append(sample)
    return samples


@pytest.mark.parametrize('name', sorted(MODELS))
def test_agreement_with_mmdet(name, d2_shapes):
    yaml, mm_path, loss_keys = MODELS[name]
    cfg = d2_cfg(yaml, d2_shapes)
    torch.manual_seed(0)
    mm, _ = _mmdet_model(mm_path)
    # train a few random steps' worth of perturbation into the weights, so that outputs are
    # not the trivial initial ones (zero offsets); same weights in both
    with torch.no_grad():
        for p in mm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d2 = build_model(cfg)
    d2.load_state_dict(to_detectron2(mm.state_dict()), strict=True)
    d2.eval()
    mm.eval()

    batch = shapes_batch(cfg, True, 2)
    image = batch[1]['image'][:, :120, :104]
    masks = batch[1]['instances'].gt_masks.tensor[:, :120, :104]
    keep = masks.flatten(1).any(1)
    batch[1] = dict(image=image, instances=Instances(
        (120, 104), gt_classes=batch[1]['instances'].gt_classes[keep],
        gt_masks=BitMasks(masks[keep])))
    out_shapes = [(256, 256), (120, 104)]
    for item, (h, w) in zip(batch, out_shapes):
        item['height'], item['width'] = h, w
    images = d2.preprocess_image(batch)
    pad_shape = tuple(images.tensor.shape[-2:])
    assert pad_shape == (128, 128)
    samples = _mmdet_samples(batch, pad_shape, out_shapes)

    with torch.no_grad():
        raw_d2 = d2.forward_outputs(images.tensor)
        raw_mm = mm.head(mm.extract_feat(images.tensor))
        for a, b in zip(raw_d2, raw_mm):
            if a is None:
                assert b is None
                continue
            assert (a - b).abs().max() <= 1e-6
        losses_d2 = d2.losses(raw_d2, *d2.batch_gt(batch, pad_shape, d2.device))
        losses_mm = mm.loss(images.tensor, samples)
    assert set(losses_d2) == set(losses_mm) == loss_keys
    diffs = {key: abs(float(losses_d2[key]) - float(losses_mm[key])) for key in loss_keys}
    diffs.update({f'raw{i}': float((a - b).abs().max()) for i, (a, b) in
                  enumerate(zip(raw_d2, raw_mm)) if a is not None})
    print(f'd2 vs mmdet {name}', {k: f'{v:.1e}' for k, v in diffs.items()})
    assert all(diffs[key] <= 1e-6 for key in loss_keys), diffs

    with torch.no_grad():
        out_d2 = d2(batch)
        out_mm = mm.predict(images.tensor, samples, rescale=True)
    assert sum(len(o['instances']) for o in out_d2) > 0
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b)
        assert torch.equal(a.pred_masks, b.masks)  # 0 differing pixels
        assert torch.equal(a.pred_classes, b.labels)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-6)
        assert torch.equal(a.pred_boxes.tensor, b.bboxes)


# --------------------------------------------------------------------------- official weights
def test_official_spatialembeddings_golden_loads_into_detectron2(d2_shapes):
    golden = torch.load(osp.join(REPO, 'tests', 'fixtures', 'official', 'spatialembeddings',
                                 'golden.pt'), weights_only=True)
    widths = golden['widths']
    cfg = d2_cfg('spatialembeddings_erfnet_cityscapes.yaml', d2_shapes,
                 'MODEL.INSPLUG.ERFNET.ENCODER_CHANNELS', list(widths),
                 'MODEL.INSPLUG.ERFNET.DECODER_CHANNELS', [widths[1], widths[0]])
    model = build_model(cfg).double().eval()
    state = to_detectron2(convert_state_dict('spatialembeddings', golden['state_dict']))
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        offsets, sigma, seeds = model.forward_outputs(golden['images'].double())
    ours = torch.cat([offsets, sigma, seeds], 1)
    diff = float((ours - golden['output'].double()).abs().max())
    print(f'official SpatialEmbeddings output in detectron2: max abs diff {diff:.1e}')
    assert diff <= 1e-5


# --------------------------------------------------------------------------- configs
def _clusterer_values(clustering_cfg):
    """mmdet clustering dict -> {NODE.KEY: value} over the class's full constructor."""
    from insplug.detectron2.config import signature_defaults
    by_name = {cls.__name__: (node, cls) for node, cls in CLUSTERERS.items()}
    c = dict(clustering_cfg)
    node, cls = by_name[c.pop('type')]
    values = dict(signature_defaults(cls), **c)
    return c and None, {f'{node}.{k.upper()}': v for k, v in values.items()}, cls.__name__


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def expected_from_mmdet(path):
    """The detectron2 values an mmdet bottom-up config implies (``{dotted key: value}``)."""
    from mmengine.config import Config
    from insplug.detectron2.config import signature_defaults
    from insplug.mmdet.bottomup.heads import DiscriminativeHead, SpatialEmbeddingHead
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    m = cfg.model
    pre = m.data_preprocessor
    out = {'MODEL.PIXEL_MEAN': _norm(pre.mean), 'MODEL.PIXEL_STD': _norm(pre.std),
           'INPUT.FORMAT': 'RGB' if pre.get('bgr_to_rgb') else 'BGR'}
    if m.backbone.type == 'ERFNet':
        from insplug.core.backbones.erfnet import ERFNet
        erf = dict(signature_defaults(ERFNet), **{k: v for k, v in m.backbone.items()
                                                  if k != 'type'})
        erf.pop('in_channels')
        out.update({f'MODEL.INSPLUG.ERFNET.{k.upper()}': _norm(v) for k, v in erf.items()})
        out['MODEL.BACKBONE.NAME'] = 'build_insplug_erfnet_backbone'
    else:
        out.update({'MODEL.BACKBONE.NAME': 'build_resnet_fpn_backbone',
                    'MODEL.RESNETS.DEPTH': m.backbone.depth,
                    'MODEL.BACKBONE.FREEZE_AT': m.backbone.frozen_stages + 1,
                    'MODEL.FPN.OUT_CHANNELS': m.neck.out_channels})
    h = dict(m.head)
    kind = h.pop('type')
    test = dict(h.pop('test_cfg', {}))
    if kind == 'SpatialEmbeddingHead':
        p = 'MODEL.INSPLUG.SPATIALEMBEDDINGS.'
        head = dict(signature_defaults(SpatialEmbeddingHead), **h)
        lw = dict(dict(instance=1.0, sigma=10.0, seed=1.0), **(head.get('loss_weights') or {}))
        out.update({p + 'NUM_CLASSES': head['num_classes'], p + 'N_SIGMA': head['n_sigma'],
                    p + 'SIGMA_INIT': head['sigma_init'],
                    p + 'SPACING': _norm(head['spacing']) if isinstance(
                        head['spacing'], (list, tuple)) else [head['spacing']] * 2,
                    p + 'FOREGROUND_WEIGHT': head['foreground_weight'],
                    p + 'INSTANCE_WEIGHT': lw['instance'], p + 'SIGMA_WEIGHT': lw['sigma'],
                    p + 'SEED_WEIGHT': lw['seed'],
                    p + 'FOREGROUND_THRESHOLD': test.get('foreground_threshold', 0.5)})
        clustering = test.get('clustering', dict(type='GreedySeedClustering'))
    else:
        p = 'MODEL.INSPLUG.DISCRIMINATIVE.'
        head = dict(signature_defaults(DiscriminativeHead), **h)
        out.update({p + 'NUM_CLASSES': head['num_classes'], p + 'EMBED_DIMS': head['embed_dims'],
                    p + 'PREDICT_COUNT': head['predict_count'],
                    p + 'SEMANTIC_WEIGHT': head['semantic_weight'],
                    p + 'SEMANTIC_CLASS_WEIGHT': _norm(head['semantic_class_weight'] or []),
                    p + 'COUNT_WEIGHT': head['count_weight'],
                    p + 'MIN_PIXELS': test.get('min_pixels', 1)})
        for key in ('delta_v', 'delta_d', 'alpha', 'beta', 'gamma', 'variance_norm',
                    'distance_norm', 'norm_eps'):
            out[p + 'LOSS.' + key.upper()] = head[key]
        out[p + 'LOSS.MIN_PIXELS'] = head['min_instance_pixels']
        clustering = test.get('clustering', dict(type='MeanShiftClustering',
                                                 bandwidth=head['delta_d'],
                                                 assign_radius=head['delta_d']))
    stride = head['in_stride']
    out[p + 'IN_FEATURES'] = ['branch0', 'branch1'] if stride == 2 else [f'p{stride // 2}'] * 2
    out[p + 'MAX_PER_IMG'] = test.get('max_per_img', 100)
    _, values, cls_name = _clusterer_values(clustering)
    out[p + 'CLUSTERING.NAME'] = cls_name
    out.update({p + 'CLUSTERING.' + k: _norm(v) for k, v in values.items()})
    opt = cfg.optim_wrapper.optimizer
    out['SOLVER.BASE_LR'] = opt.lr
    out['SOLVER.WEIGHT_DECAY'] = opt.get('weight_decay', 0.0)
    accumulate = cfg.optim_wrapper.get('accumulative_counts', 1)
    gpus = 1 if 'demo' in path else 8 if 'coco' in path else 1
    out['SOLVER.IMS_PER_BATCH'] = cfg.train_dataloader.batch_size * gpus * accumulate
    return out


def _get(cfg, dotted):
    for k in dotted.split('.'):
        cfg = cfg[k]
    return _norm(list(cfg) if isinstance(cfg, tuple) else cfg)


PAIRS = [
    ('spatialembeddings_erfnet_cityscapes.yaml',
     'spatialembeddings/spatialembeddings_erfnet_cityscapes.py'),
    ('discriminative_erfnet_cityscapes.yaml', 'discriminative/discriminative_erfnet_cityscapes.py'),
    ('spatialembeddings_r50_fpn_coco.yaml', 'spatialembeddings/spatialembeddings_r50_fpn_coco.py'),
    ('discriminative_r50_fpn_kmeans_coco.yaml',
     'discriminative/discriminative_r50_fpn_kmeans_coco.py'),
    ('spatialembeddings_erfnet_shapes.yaml', 'demo/spatialembeddings_erfnet_shapes.py'),
    ('discriminative_erfnet_shapes.yaml', 'demo/discriminative_erfnet_shapes.py'),
]


@pytest.mark.parametrize('yaml,mm_path', PAIRS)
def test_yaml_equals_mmdet_config(yaml, mm_path):
    pytest.importorskip('mmdet')
    from insplug.detectron2.train_net import setup_cfg
    cfg = setup_cfg(osp.join(D2_CONFIGS, yaml))
    expected = expected_from_mmdet(mm_path)
    assert len(expected) > 20
    diff = {k: (_get(cfg, k), v) for k, v in expected.items() if _get(cfg, k) != v}
    assert not diff, diff
    prefix = 'DISCRIMINATIVE' if 'Discriminative' in cfg.MODEL.META_ARCHITECTURE else \
        'SPATIALEMBEDDINGS'
    assert cfg.MODEL.META_ARCHITECTURE == 'Insplug' + {'DISCRIMINATIVE': 'Discriminative',
                                                       'SPATIALEMBEDDINGS':
                                                       'SpatialEmbeddings'}[prefix]


LAZY = [('spatialembeddings_erfnet_cityscapes.py',
         'spatialembeddings/spatialembeddings_erfnet_cityscapes.py'),
        ('discriminative_erfnet_cityscapes.py',
         'discriminative/discriminative_erfnet_cityscapes.py'),
        ('spatialembeddings_r50_fpn_coco.py',
         'spatialembeddings/spatialembeddings_r50_fpn_coco.py'),
        ('discriminative_r50_fpn_kmeans_coco.py',
         'discriminative/discriminative_r50_fpn_kmeans_coco.py')]


@pytest.mark.parametrize('lazy,mm_path', LAZY)
def test_lazyconfig_equals_mmdet_config(lazy, mm_path):
    pytest.importorskip('mmdet')
    from insplug.detectron2.train_net import setup_cfg
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, lazy))
    model = instantiate(cfg.model)
    # the yaml twin is checked key by key against mmdet; the LazyConfig's model must equal it
    yaml_cfg = setup_cfg(osp.join(D2_CONFIGS, lazy.replace('.py', '.yaml')),
                         ['MODEL.DEVICE', 'cpu'])
    ref = build_model(yaml_cfg)
    assert type(model) is type(ref)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    for attr in ('num_classes', 'in_features', 'max_per_img', 'loss_cfg', 'spacing',
                 'foreground_threshold', 'semantic_weight', 'semantic_class_weight',
                 'count_weight', 'min_pixels'):
        if hasattr(ref, attr):
            assert getattr(model, attr) == getattr(ref, attr), attr
    assert type(model.clusterer) is type(ref.clusterer)
    assert vars(model.clusterer) == vars(ref.clusterer)
    assert model.pixel_mean.flatten().tolist() == ref.pixel_mean.flatten().tolist()
    assert model.pixel_std.flatten().tolist() == ref.pixel_std.flatten().tolist()
    assert [type(m).__name__ for m in model.modules()] == \
        [type(m).__name__ for m in ref.modules()]
    assert [(k, p.requires_grad) for k, p in model.named_parameters()] == \
        [(k, p.requires_grad) for k, p in ref.named_parameters()]
    expected = expected_from_mmdet(mm_path)
    assert cfg.optimizer.lr == expected['SOLVER.BASE_LR']
    assert cfg.optimizer.weight_decay == expected['SOLVER.WEIGHT_DECAY']
    assert cfg.dataloader.train.total_batch_size == expected['SOLVER.IMS_PER_BATCH']
    assert cfg.dataloader.train.mapper.image_format == expected['INPUT.FORMAT']


@pytest.mark.parametrize('lazy', [x[0] for x in LAZY[:2]])
def test_lazyconfig_train_step_and_inference(lazy, d2_shapes):
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L
    from detectron2.evaluation import COCOEvaluator
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, lazy))
    cfg = LazyConfig.apply_overrides(cfg, [
        f'dataloader.train.dataset.names={d2_shapes["train"]}',
        f'dataloader.test.dataset.names={d2_shapes["val"]}',
        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
        'dataloader.test.num_workers=0', 'model.num_classes=5',
        'dataloader.train.mapper.instance_mask_format=bitmask'])
    cfg.dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128,
                                                                         max_size=128)]
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128,
                                                                        max_size=128)]
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(0):
        losses = model(batch)
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


def test_official_checkpoint_file_to_detectron2(d2_shapes, tmp_path):
    """The release's file layout (``{'model_state_dict': {'module.' + key: ...}}``) ->
    ``convert_checkpoint_to_detectron2`` (``tools/convert_checkpoint.py spatialembeddings IN OUT
    --to detectron2``) -> detectron2's checkpointer (weights-only) -> the official output."""
    from insplug.converters.to_detectron2 import convert_checkpoint_to_detectron2
    from insplug.detectron2.checkpoint import SafeDetectionCheckpointer
    golden = torch.load(osp.join(REPO, 'tests', 'fixtures', 'official', 'spatialembeddings',
                                 'golden.pt'), weights_only=True)
    src, dst = tmp_path / 'cars_pretrained_model.pth', tmp_path / 'd2.pth'
    torch.save({'epoch': 200, 'model_state_dict': {'module.' + k: v for k, v in
                                                   golden['state_dict'].items()}}, src)
    convert_checkpoint_to_detectron2('spatialembeddings', str(src), str(dst))
    widths = golden['widths']
    cfg = d2_cfg('spatialembeddings_erfnet_cityscapes.yaml', d2_shapes,
                 'MODEL.INSPLUG.ERFNET.ENCODER_CHANNELS', list(widths),
                 'MODEL.INSPLUG.ERFNET.DECODER_CHANNELS', [widths[1], widths[0]])
    model = build_model(cfg).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['model'], strict=True)
    fresh = build_model(cfg).eval()
    SafeDetectionCheckpointer(fresh).load(str(dst))
    with torch.no_grad():
        a = torch.cat(fresh.forward_outputs(golden['images'].float()), 1)
        b = torch.cat(model.forward_outputs(golden['images'].float()), 1)
    assert torch.equal(a, b)
    assert (a.double() - golden['output'].double()).abs().max() <= 1e-4  # float32 run


def test_discriminative_semantic_loss_replacement(d2_shapes):
    """``semantic_loss_fn`` (e.g. a Lovasz-softmax module) replaces the cross entropy; it gets
    the (B, K + 1, H, W) logits and the (B, H, W) class map (0 background, k + 1 class k)."""
    cfg = d2_cfg(MODELS['discriminative'][0], d2_shapes)
    model = build_model(cfg).train()
    batch = shapes_batch(cfg, True, 2)
    seen = {}

    def fn(logits, targets):
        seen['shapes'] = (tuple(logits.shape), tuple(targets.shape))
        seen['classes'] = sorted(targets.unique().tolist())
        return logits.sum() * 0 + 7.0

    model.semantic_loss_fn = fn
    losses = model(batch)
    weight = cfg.MODEL.INSPLUG.DISCRIMINATIVE.SEMANTIC_WEIGHT
    assert float(losses['loss_semantic']) == 7.0 * weight
    h, w = seen['shapes'][0][-2:]
    assert seen['shapes'] == ((2, 6, h, w), (2, h, w))
    gt = sorted({int(c) + 1 for x in batch for c in x['instances'].gt_classes})
    assert seen['classes'] == [0] + gt
