"""SOLO and SOLOv2 through detectron2: ``InsplugSOLOv2`` against mmdet 3's ``SOLOV2Head``,
``InsplugSOLO`` against mmdet 3's ``SOLOHead`` / ``DecoupledSOLOHead``.

The models are built from ``configs/detectron2/solov2_r18_shapes.yaml`` /
``solo_r18_shapes.yaml`` (float64, head weights redrawn so that scores pass the thresholds).
mmdet's heads get the same head weights (key conversion below: ``ins_head.*`` -> ``*``,
``mask_head.*`` -> ``mask_feature_head.*``) and the same P2-P6 features. Compared: the raw
outputs (1e-5 absolute), the two losses (1e-5 relative) on gt masks at the padded size (mmdet
pads the masks, AdelaiDet and insplug's SOLOv2 adapter do not; same targets when they
coincide), for SOLOv2 with both dice normalisers (the releases' mean over the mask targets,
insplug's default; mmdet 3's sum over the distinct positive cells,
``dice_normalizer='cells'``), and the final scores (1e-5), labels and masks (0 differing
pixels) of a batch of two images of different input and output sizes. Also: a training step
through ``forward`` (finite losses, gradients), inference through ``forward`` (``Instances``
with tight boxes), the converted release layout loading strictly, and the LazyConfigs building
the models of their yaml twins.
"""
import os.path as osp

import numpy as np
import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402

from insplug.core.solo import solov2_losses  # noqa: E402

TOL = 1e-5
PAD = (256, 256)


def build(*opts):
    from insplug.detectron2.train_net import setup_cfg
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'solov2_r18_shapes.yaml'), ['MODEL.DEVICE', 'cpu', *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(('ins_head', 'mask_head')):
                continue
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            else:
                base = 1.0 if name.endswith('gn.weight') else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
        model.ins_head.conv_cls.bias.add_(-1.5)
    return cfg, model.double()


def mmdet_head(cfg, model):
    from mmdet.models.dense_heads import SOLOV2Head
    s = cfg.MODEL.INSPLUG.SOLOV2
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    head = SOLOV2Head(
        num_classes=s.NUM_CLASSES, in_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        feat_channels=s.INSTANCE_CHANNELS, stacked_convs=s.NUM_INSTANCE_CONVS,
        strides=list(s.FPN_INSTANCE_STRIDES),
        scale_ranges=[tuple(r) for r in s.FPN_SCALE_RANGES], pos_scale=s.SIGMA,
        num_grids=list(s.NUM_GRIDS), cls_down_index=0,
        mask_feature_head=dict(feat_channels=s.MASK_CHANNELS, start_level=0, end_level=3,
                               out_channels=s.NUM_MASKS, mask_stride=4, norm_cfg=gn),
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        norm_cfg=gn,
        test_cfg=dict(nms_pre=s.NMS_PRE, score_thr=s.SCORE_THR, mask_thr=s.MASK_THR,
                      filter_thr=s.UPDATE_THR, kernel=s.NMS_KERNEL, sigma=s.NMS_SIGMA,
                      max_per_img=s.MAX_PER_IMG))
    from mmengine.config import ConfigDict
    head.test_cfg = ConfigDict(head.test_cfg)
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith('ins_head.'):
            sd[k[len('ins_head.'):]] = v
        elif k.startswith('mask_head.'):
            sd['mask_feature_head.' + k[len('mask_head.'):]] = v
    head.load_state_dict(sd, strict=True)
    return head.double()


def gt_image(gen, size, specs):
    h, w = size
    yy = torch.arange(h)[:, None].double()
    xx = torch.arange(w)[None, :].double()
    masks = []
    for cy, cx, ry, rx in specs:
        masks.append((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
                     & (torch.rand(h, w, generator=gen) < 0.95))
    masks = torch.stack(masks)
    bm = BitMasks(masks)
    inst = Instances((h, w))
    inst.gt_boxes = bm.get_bounding_boxes()
    inst.gt_classes = torch.randint(0, 5, (len(specs),), generator=gen)
    inst.gt_masks = bm
    return inst


SPECS = [[(60, 70, 30, 40), (150, 160, 80, 70), (200, 40, 10, 12), (128, 128, 120, 125)],
         [(40, 200, 20, 30), (100, 90, 50, 60), (230, 230, 6, 8)]]


@pytest.fixture(scope='module')
def setup():
    cfg, model = build()
    model.eval()
    head = mmdet_head(cfg, model).eval()
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, *PAD, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        features = model.backbone(images)
    feats = [features[f] for f in model.instance_in_features]
    return cfg, model, head, features, feats, gen


def test_raw_outputs_agree(setup):
    cfg, model, head, features, feats, _ = setup
    with torch.no_grad():
        cate, kernels, mask_feats = model.forward_heads(features)
        m_kernels, m_cate, m_feats = head(tuple(feats))
    for a, b in zip(cate, m_cate):
        assert (a - b).abs().max() <= TOL
    for a, b in zip(kernels, m_kernels):
        assert (a - b).abs().max() <= TOL
    assert (mask_feats - m_feats).abs().max() <= TOL


@pytest.mark.parametrize('normalizer', ['cells', 'targets'])
def test_losses_agree(setup, normalizer):
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    cfg, model, head, features, feats, gen = setup
    gts = [gt_image(gen, PAD, s) for s in SPECS]
    cate, kernels, mask_feats = model.forward_heads(features)
    targets = model.targets(gts, tuple(mask_feats.shape[-2:]))
    ours = solov2_losses(cate, kernels, mask_feats, targets, model.num_classes,
                         **dict(model.loss_cfg, dice_normalizer=normalizer))
    default = model.losses(cate, kernels, mask_feats, gts)
    assert model.loss_cfg['dice_normalizer'] == 'targets'
    num_targets = sum(len(t['pos_index']) for img in targets for t in img)
    num_cells = sum(int(t['pos_mask'].sum()) for img in targets for t in img)
    assert num_targets > num_cells  # cells shared by two instances: the normalisers differ
    data = [InstanceData(bboxes=g.gt_boxes.tensor.double(), labels=g.gt_classes,
                         masks=BitmapMasks(g.gt_masks.tensor.numpy().astype(np.uint8), *PAD))
            for g in gts]
    metas = [dict(img_shape=PAD, pad_shape=PAD, batch_input_shape=PAD) for _ in gts]
    m_kernels, m_cate, m_feats = head(tuple(feats))
    theirs = head.loss_by_feat(m_kernels, m_cate, m_feats, data, metas)
    # mmdet 3 divides the dice sum by the distinct positive cells, the releases average over
    # the targets: equal after rescaling by cells / targets
    scale = dict(cells=1.0, targets=num_cells / num_targets)[normalizer]
    assert abs(float(default['loss_ins']) - float(theirs['loss_mask']) * num_cells
               / num_targets) <= TOL
    for a, b in (('loss_ins', 'loss_mask'), ('loss_cate', 'loss_cls')):
        x, y = float(ours[a]), float(theirs[b]) * (scale if a == 'loss_ins' else 1.0)
        assert abs(x - y) <= TOL * max(1.0, abs(y)), (a, x, y)
    assert float(ours['loss_ins']) > 0


def test_predictions_agree(setup):
    cfg, model, head, features, feats, _ = setup
    sizes = [(256, 256), (224, 192)]
    outs = [dict(height=300, width=320), dict(height=180, width=150)]
    with torch.no_grad():
        cate, kernels, mask_feats = model.forward_heads(features)
        ours = model.inference(cate, kernels, mask_feats, outs, sizes)
        m_kernels, m_cate, m_feats = head(tuple(feats))
        metas = [dict(img_shape=s, ori_shape=(o['height'], o['width'])) for s, o in
                 zip(sizes, outs)]
        theirs = head.predict_by_feat(list(m_kernels), list(m_cate), m_feats, metas)
    for o, t in zip(ours, theirs):
        inst = o['instances']
        assert len(inst) == len(t.scores) > 0
        assert (inst.scores - t.scores).abs().max() <= TOL
        assert torch.equal(inst.pred_classes, t.labels)
        assert int((inst.pred_masks != t.masks).sum()) == 0


def test_forward_train_and_test():
    cfg, model = build()
    model.float().train()
    gen = torch.Generator().manual_seed(3)
    batch = [dict(image=torch.rand(3, 256, 256, generator=gen) * 255,
                  instances=gt_image(gen, (256, 256), SPECS[0])),
             dict(image=torch.rand(3, 224, 192, generator=gen) * 255,
                  instances=gt_image(gen, (224, 192), [(100, 90, 50, 60)]))]
    losses = model(batch)
    assert set(losses) == {'loss_ins', 'loss_cate'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.ins_head.conv_kernel.weight.grad.abs().sum() > 0
    assert model.mask_head.conv_pred.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([dict(image=batch[1]['image'], height=112, width=96)])
    inst = out[0]['instances']
    assert inst.image_size == (112, 96)
    assert inst.pred_masks.shape[1:] == (112, 96) and inst.pred_masks.dtype == torch.bool
    for m, b in zip(inst.pred_masks, inst.pred_boxes.tensor):
        ys, xs = torch.nonzero(m, as_tuple=True)
        ref = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]
        assert b.tolist() == [float(v) for v in ref]
    assert torch.all(inst.scores[:-1] >= inst.scores[1:])


def test_converted_release_loads_strictly():
    """The official R-50 key layout (recorded from AdelaiDet) -> the detectron2 model."""
    from insplug.converters.solov2 import official_to_detectron2
    from insplug.detectron2.train_net import setup_cfg
    fixture = osp.join(osp.dirname(D2_CONFIGS), '..', 'tests', 'fixtures', 'official', 'solov2',
                       'golden.pt')
    keys = torch.load(fixture, weights_only=True)['release_keys']
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'solov2_r50_3x.yaml'), ['MODEL.DEVICE', 'cpu'])
    model = build_model(cfg)
    sd = official_to_detectron2({k: torch.zeros(s) for k, s in keys})
    missing, unexpected = model.load_state_dict(sd, strict=True)
    assert not missing and not unexpected


@pytest.mark.parametrize('name', ['solov2_r50_3x', 'solov2_r50_1x', 'solo_r50_1x'])
def test_lazyconfig_equals_yaml(name):
    """configs/detectron2/NAME.py builds the model of NAME.yaml, with the same schedule."""
    from detectron2.config import LazyConfig, instantiate
    from insplug.detectron2.train_net import setup_cfg
    lazy_cfg = LazyConfig.load(osp.join(D2_CONFIGS, f'{name}.py'))
    lazy = instantiate(lazy_cfg.model)
    cfg = setup_cfg(osp.join(D2_CONFIGS, f'{name}.yaml'), ['MODEL.DEVICE', 'cpu'])
    yaml = build_model(cfg)
    assert lazy_cfg.train.max_iter == cfg.SOLVER.MAX_ITER
    assert list(lazy_cfg.lr_multiplier.scheduler.milestones[:-1]) == list(cfg.SOLVER.STEPS)
    a, b = lazy.state_dict(), yaml.state_dict()
    assert set(a) == set(b) and all(a[k].shape == b[k].shape for k in a)
    for attr in ('loss_cfg', 'test_cfg', 'strides', 'scale_ranges', 'sigma',
                 'instance_in_features'):
        assert getattr(lazy, attr) == getattr(yaml, attr), attr
    assert torch.equal(lazy.pixel_mean, yaml.pixel_mean)
    assert torch.equal(lazy.pixel_std, yaml.pixel_std)


# ----------------------------------------------------------------------------- SOLO (v1)
def build_solo(decoupled):
    from insplug.detectron2.train_net import setup_cfg
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'solo_r18_shapes.yaml'),
                    ['MODEL.DEVICE', 'cpu', 'MODEL.INSPLUG.SOLO.DECOUPLED', decoupled])
    torch.manual_seed(0)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith('ins_head'):
                continue
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            else:
                base = 1.0 if name.endswith('gn.weight') else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
        model.ins_head.conv_cls.bias.add_(-1.5)
    return cfg, model.double().eval()


def mmdet_solo_head(cfg, model):
    from mmdet.models.dense_heads import DecoupledSOLOHead, SOLOHead
    from mmengine.config import ConfigDict
    s = cfg.MODEL.INSPLUG.SOLO
    head_type = DecoupledSOLOHead if s.DECOUPLED else SOLOHead
    head = head_type(
        num_classes=s.NUM_CLASSES, in_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        feat_channels=s.INSTANCE_CHANNELS, stacked_convs=s.NUM_INSTANCE_CONVS,
        strides=list(s.FPN_INSTANCE_STRIDES),
        scale_ranges=[tuple(r) for r in s.FPN_SCALE_RANGES], pos_scale=s.SIGMA,
        num_grids=list(s.NUM_GRIDS), cls_down_index=0,
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, activate=not s.DECOUPLED,
                       loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        test_cfg=dict(nms_pre=s.NMS_PRE, score_thr=s.SCORE_THR, mask_thr=s.MASK_THR,
                      filter_thr=s.UPDATE_THR, kernel=s.NMS_KERNEL, sigma=s.NMS_SIGMA,
                      max_per_img=s.MAX_PER_IMG))
    head.test_cfg = ConfigDict(head.test_cfg)
    sd = {k[len('ins_head.'):]: v for k, v in model.state_dict().items()
          if k.startswith('ins_head.')}
    head.load_state_dict(sd, strict=True)
    return head.double()


@pytest.mark.parametrize('decoupled', [False, True], ids=['vanilla', 'decoupled'])
def test_solo_agrees_with_mmdet(decoupled):
    """Raw outputs, losses and final scores / labels / masks of InsplugSOLO against mmdet's
    SOLOHead / DecoupledSOLOHead with the same weights and features."""
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    cfg, model = build_solo(decoupled)
    head = mmdet_solo_head(cfg, model)
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, *PAD, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        features = model.backbone(images)
    feats = tuple(features[f] for f in model.instance_in_features)
    # raw outputs (training mode: logits)
    head.train()
    ours = model.ins_head(list(feats))
    theirs = head(feats)
    for a_list, b_list in zip(ours, theirs):
        for a, b in zip(a_list, b_list):
            assert (a - b).abs().max() <= TOL
    # losses
    gts = [gt_image(gen, PAD, s) for s in SPECS]
    our_losses = model.losses(ours, gts, PAD)
    data = [InstanceData(bboxes=g.gt_boxes.tensor.double(), labels=g.gt_classes,
                         masks=BitmapMasks(g.gt_masks.tensor.numpy().astype(np.uint8), *PAD))
            for g in gts]
    metas = [dict(img_shape=PAD, pad_shape=PAD, batch_input_shape=PAD) for _ in gts]
    their_losses = head.loss_by_feat(*theirs, data, metas)
    for a, b in (('loss_ins', 'loss_mask'), ('loss_cate', 'loss_cls')):
        x, y = float(our_losses[a]), float(their_losses[b])
        assert abs(x - y) <= TOL * max(1.0, abs(y)), (a, x, y)
    assert float(our_losses['loss_ins']) > 0
    # predictions (eval mode: mmdet's forward already applies sigmoid / point NMS)
    head.eval()
    sizes = [(256, 256), (224, 192)]
    outs = [dict(height=300, width=320), dict(height=180, width=150)]
    with torch.no_grad():
        mine = model.inference(model.ins_head(list(feats)), outs, sizes)
        metas = [dict(img_shape=s, ori_shape=(o['height'], o['width'])) for s, o in
                 zip(sizes, outs)]
        ref = head.predict_by_feat(*[list(x) for x in head(feats)], batch_img_metas=metas)
    for o, t in zip(mine, ref):
        inst = o['instances']
        assert len(inst) == len(t.scores) > 0
        assert (inst.scores - t.scores).abs().max() <= TOL
        assert torch.equal(inst.pred_classes, t.labels)
        assert int((inst.pred_masks != t.masks).sum()) == 0


@pytest.mark.parametrize('decoupled', [False, True], ids=['vanilla', 'decoupled'])
def test_solo_forward_train_and_test(decoupled):
    cfg, model = build_solo(decoupled)
    model.float().train()
    gen = torch.Generator().manual_seed(3)
    batch = [dict(image=torch.rand(3, 256, 256, generator=gen) * 255,
                  instances=gt_image(gen, (256, 256), SPECS[0])),
             dict(image=torch.rand(3, 224, 192, generator=gen) * 255,
                  instances=gt_image(gen, (224, 192), [(100, 90, 50, 60)]))]
    losses = model(batch)
    assert set(losses) == {'loss_ins', 'loss_cate'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.ins_head.conv_cls.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([dict(image=batch[1]['image'], height=112, width=96)])
    inst = out[0]['instances']
    assert inst.image_size == (112, 96) and inst.pred_masks.shape[1:] == (112, 96)
