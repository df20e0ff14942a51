"""SparseInst mmdet adapter: loss/predict on a fake batch, criterion parity, registration."""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from insplug.core.sparseinst.loss import sparseinst_loss
from insplug.registry import MODELS, TASK_UTILS

DEMO = 'configs/demo/sparseinst_r18_shapes.py'
R50 = 'configs/sparseinst/sparseinst_r50_giam.py'


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('insplug')


def make_batch(sizes=((64, 64), (48, 64)), counts=(2, 0), seed=0):
    rng = np.random.RandomState(seed)
    inputs, samples = [], []
    for idx, ((h, w), count) in enumerate(zip(sizes, counts)):
        inputs.append(torch.from_numpy(rng.randint(0, 255, (3, h, w)).astype(np.uint8)))
        masks = np.zeros((count, h, w), np.uint8)
        boxes = []
        for i in range(count):
            y0, x0 = rng.randint(0, h // 2), rng.randint(0, w // 2)
            masks[i, y0:y0 + h // 3, x0:x0 + w // 3] = 1
            boxes.append([x0, y0, x0 + w // 3, y0 + h // 3])
        sample = DetDataSample(metainfo=dict(img_id=idx, img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.from_numpy(rng.randint(0, 5, count)).long(),
            masks=BitmapMasks(masks, h, w))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def build(config, **decoder):
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.decoder.update(decoder)
    return MODELS.build(cfg.model)


def test_demo_model_loss_backward_and_predict():
    torch.manual_seed(0)
    model = build(DEMO)
    data = model.data_preprocessor(make_batch(), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_mask', 'loss_dice', 'loss_obj'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.decoder.inst_branch.cls_score.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0

    model.eval()
    data = model.data_preprocessor(make_batch(), training=False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    for res, (h, w) in zip(results, ((64, 64), (48, 64))):
        pred = res.pred_instances
        n = len(pred)
        assert pred.masks.shape == (n, h, w) and pred.masks.dtype == torch.bool
        assert pred.bboxes.shape == (n, 4) and pred.labels.shape == (n,)
        assert (pred.scores[:-1] >= pred.scores[1:]).all()
        for mask, box in zip(pred.masks, pred.bboxes):  # boxes are the masks' tight boxes
            if mask.any():
                ys, xs = torch.nonzero(mask, as_tuple=True)
                assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    tensors = model(data['inputs'], mode='tensor')
    assert tensors[0].shape == (2, 20, 5) and tensors[2].shape[-2:] == (16, 16)


@pytest.mark.parametrize('iam_type,groups', [('base', 1), ('group', 2), ('group_softmax', 4)])
def test_decoder_variants_build_and_train(iam_type, groups):
    model = build(DEMO, iam_type=iam_type, groups=groups)
    data = model.data_preprocessor(make_batch(counts=(1, 3)), training=True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


def test_mmdet_criterion_matches_core_losses():
    """The mmdet losses (FocalLoss, CrossEntropyLoss, DiceLoss) reproduce the core maths."""
    gen = torch.Generator().manual_seed(1)
    outputs = dict(cls_logits=torch.randn(2, 6, 5, generator=gen),
                   obj_logits=torch.randn(2, 6, 1, generator=gen),
                   mask_logits=torch.randn(2, 6, 8, 8, generator=gen))
    batch = make_batch(sizes=((32, 32), (32, 28)), counts=(3, 2))
    gts = [s.gt_instances for s in batch['data_samples']]
    metas = [dict(batch_input_shape=(32, 32)) for _ in gts]
    criterion = MODELS.build(dict(type='SparseInstCriterion', num_classes=5))
    got = criterion(outputs, gts, metas)
    ref = sparseinst_loss(outputs, [torch.from_numpy(g.masks.masks).float() for g in gts],
                          [g.labels for g in gts], (32, 32), num_classes=5)
    for key in ref:
        assert got[key].item() == pytest.approx(ref[key].item(), rel=1e-4), key


def test_matcher_registered_and_config_errors():
    matcher = TASK_UTILS.build(dict(type='SparseInstMatcher'))
    assert matcher.alpha == 0.8 and matcher.beta == pytest.approx(0.2)
    cfg = Config.fromfile(DEMO)
    cfg.model.criterion.num_classes = 7
    with pytest.raises(ValueError, match='num_classes'):
        MODELS.build(cfg.model)
    cfg = Config.fromfile(DEMO)
    cfg.model.test_cfg = dict(score_thr=0.1, nms=dict(iou_threshold=0.5))
    with pytest.raises(ValueError, match='unknown keys'):
        MODELS.build(cfg.model)


def test_r50_config_matches_the_official_schedule():
    cfg = Config.fromfile(R50)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 5e-5
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.train_cfg.max_iters == 270000
    assert cfg.param_scheduler[-1].milestones == [210000, 250000]
    shorts = sorted(min(s) for s in cfg.train_pipeline[2].scales)
    assert shorts == list(range(416, 641, 32))
    assert min(cfg.test_pipeline[1].scale) == 640
    dec = cfg.model.decoder
    assert (dec.iam_type, dec.groups, dec.num_masks, dec.kernel_dim) == ('group', 4, 100, 128)
    assert cfg.model.criterion.assigner.alpha == 0.8
    model = build(R50)  # builds without downloading (init_cfg dropped)
    assert model.decoder.inst_branch.iam_conv.out_channels == 400
