"""EmbedMask mmdet adapter: the head's outputs, losses with and without objects, the in-mask
positive rule and predictions."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_sample(masks, labels, size=128):
    s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                    scale_factor=(1.0, 1.0), pad_shape=(size, size),
                                    batch_input_shape=(size, size)))
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(np.asarray(masks, dtype=np.uint8).reshape(-1, size, size), size, size))
    return s


def ring(size=128):
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - 64) ** 2 + (xx - 64) ** 2
    return ((r2 <= 40 ** 2) & (r2 >= 25 ** 2)).astype(np.uint8)


@pytest.fixture(scope='module')
def model():
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/embedmask_r18_shapes.py'))
    torch.manual_seed(0)
    m = MODELS.build(cfg.model)
    m.init_weights()
    return m


def test_in_mask_rule_excludes_the_hole(model):
    head = model.bbox_head
    gt = make_sample([ring()], [4]).gt_instances
    points = head._points([(16, 16), (8, 8), (4, 4), (2, 2)], torch.float32, 'cpu')
    pts = torch.cat(points)
    index = head.get_targets(points, [gt])[0][2]
    pos = pts[index >= 0]
    assert len(pos) > 0
    r = ((pos - 64) ** 2).sum(1).sqrt()
    assert (r >= 24).all()  # no positive in the ring's hole
    head.sample_in_mask = False
    try:
        assert (head.get_targets(points, [gt])[0][2] >= 0).sum() > len(pos)
    finally:
        head.sample_in_mask = True


def test_head_outputs_and_margin_prior(model):
    model.eval()
    with torch.no_grad():
        outs = model.bbox_head(model.extract_feat(torch.rand(1, 3, 128, 128)))
    cls, box, ctr, emb, mar, pixel = outs
    # D = 16 margins per proposal (released revision), pixel embeddings at stride 8
    assert emb[0].shape[1] == 16 and mar[0].shape[1] == 16 and pixel.shape[1:] == (16, 16, 16)
    assert len(model.bbox_head.margin_scales) == 4
    # margins start near the prior (probability 0.5 at distance 2): ln 2 / 4 per dimension
    assert torch.allclose(mar[0].mean(), torch.tensor(np.log(2) / 4, dtype=torch.float32),
                          rtol=0.1)


def test_losses_with_and_without_objects(model):
    model.train()
    disk = np.zeros((128, 128), np.uint8)
    yy, xx = np.mgrid[:128, :128]
    disk[(yy - 30) ** 2 + (xx - 30) ** 2 <= 15 ** 2] = 1
    losses = model.loss(torch.rand(2, 3, 128, 128),
                        [make_sample([ring(), disk], [4, 0]), make_sample([], [])])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses['loss_mask']) > 0
    sum(losses.values()).backward()
    assert model.bbox_head.pixel_other.weight.grad.abs().sum() > 0
    assert model.bbox_head.conv_margin.weight.grad.abs().sum() > 0
    empty = model.loss(torch.rand(1, 3, 128, 128), [make_sample([], [])])
    assert float(empty['loss_mask']) == 0.0


def test_predictions(model):
    model.eval()
    s = make_sample([ring()], [4])
    s.set_metainfo(dict(ori_shape=(64, 64), scale_factor=(2.0, 2.0)))
    model.bbox_head.test_cfg['score_thr'] = 0.0
    try:
        with torch.no_grad():
            out = model.predict(torch.rand(1, 3, 128, 128), [s])[0].pred_instances
    finally:
        model.bbox_head.test_cfg['score_thr'] = 0.05
    assert 0 < len(out) <= 50
    assert out.masks.shape[1:] == (64, 64) and out.masks.dtype == torch.bool
    # an untrained model's scores (prior 0.01) are below the 0.05 threshold: no detections
    with torch.no_grad():
        empty = model.predict(torch.rand(1, 3, 128, 128), [s])[0].pred_instances
    assert len(empty) == 0 and empty.masks.shape == (0, 64, 64)


def test_earlier_revision_options_run():
    """One margin per proposal and the padded-box loss region (the 2020 revision) still build,
    train and predict."""
    init_default_scope('insplug')
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/embedmask_r18_shapes.py'))
    cfg.model.bbox_head.update(per_dim_margin=False, box_padding=0.1, embed_dim=8)
    torch.manual_seed(0)
    m = MODELS.build(cfg.model)
    m.init_weights()
    assert m.bbox_head.conv_margin.out_channels == 1
    assert not hasattr(m.bbox_head, 'margin_scales')
    m.train()
    losses = m.loss(torch.rand(1, 3, 128, 128), [make_sample([ring()], [4])])
    assert torch.isfinite(losses['loss_mask']) and float(losses['loss_mask']) > 0
    m.eval()
    m.bbox_head.test_cfg['score_thr'] = 0.0
    with torch.no_grad():
        out = m.predict(torch.rand(1, 3, 128, 128), [make_sample([ring()], [4])])
    assert out[0].pred_instances.masks.shape[1:] == (128, 128)


def test_official_optimizer_groups(model):
    """maskrcnn-benchmark: every "bias" (GN biases too) at lr x2 without weight decay; GN
    weights keep the weight decay."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(REPO, 'configs/embedmask/embedmask_r50_1x.py'))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            name = names[id(p)]
            if name.startswith('backbone.'):
                continue  # the released backbone's BN is frozen (no trainable norm there)
            seen.add(name)
            if name.endswith('.bias'):
                assert group['lr'] == pytest.approx(0.02) and group['weight_decay'] == 0, name
            else:
                assert group['lr'] == pytest.approx(0.01), name
                assert group['weight_decay'] == pytest.approx(1e-4), name
    assert 'bbox_head.cls_convs.0.gn.bias' in seen and 'bbox_head.cls_convs.0.gn.weight' in seen
