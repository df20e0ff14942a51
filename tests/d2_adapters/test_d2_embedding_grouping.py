"""Embedding-grouping models through detectron2: ``InsplugRecurrentPixelEmbedding`` and
``InsplugMetricSeediness`` (META_ARCH).

* built from the shapes yamls, each model runs a training step (finite losses, gradients reach
  both output layers and the ERFNet encoder) and inference (``Instances`` at the requested size,
  boolean masks, boxes equal to the masks' tight boxes, sorted scores, classes in range);
* the detectron2 and mmdet adapters (``RecurrentPixelEmbeddingSegmentor`` /
  ``MetricSeedinessSegmentor``), given the same weights (the mmdet state_dict mapped by
  ``insplug.converters.spatialembeddings.to_detectron2``, loaded strictly), the same padded
  batch of two images of different sizes and the same torch seed (pixel sampling and grid
  offsets are random): raw outputs equal (abs 1e-6), every loss term equal (abs 1e-6), final
  masks with 0 differing pixels, same scores / labels / boxes;
* each yaml's method keys equal its mmdet demo config's.
"""
import numpy as np
import pytest

from d2_utils import INSTALL_HINT, d2_cfg  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402
from test_d2_bottomup import (_mmdet_model, _mmdet_samples, shapes_batch,  # noqa: E402
                              tight_boxes)

from insplug.converters.spatialembeddings import to_detectron2  # noqa: E402

MODELS = {
    'recurrent_embedding': ('recurrent_embedding_erfnet_shapes.yaml',
                            'demo/recurrent_embedding_erfnet_shapes.py',
                            {'loss_pull', 'loss_push', 'loss_semantic'}, 'semantic'),
    'metric_seediness': ('metric_seediness_erfnet_shapes.yaml',
                         'demo/metric_seediness_erfnet_shapes.py',
                         {'loss_embed', 'loss_seediness'}, 'seediness'),
}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_train_step_and_inference(name, d2_shapes):
    yaml, _, keys, second = MODELS[name]
    cfg = d2_cfg(yaml, d2_shapes)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = model(shapes_batch(cfg, True, 2))
    assert set(losses) == keys
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert model.outputs.embedding.conv.weight.grad.abs().sum() > 0
    assert getattr(model.outputs, second).conv.weight.grad.abs().sum() > 0
    assert model.backbone.encoder.layers[0].conv.weight.grad.abs().sum() > 0

    model.eval()
    images = shapes_batch(cfg, False, 2)
    images[1]['height'], images[1]['width'] = 200, 180
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w)
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert len(inst) <= 100
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        if len(inst):
            assert 0 <= inst.pred_classes.min() and inst.pred_classes.max() < 5
        np.testing.assert_array_equal(inst.pred_boxes.tensor.numpy(),
                                      tight_boxes(inst.pred_masks.numpy()))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_agreement_with_mmdet(name, d2_shapes):
    yaml, mm_path, keys, _ = MODELS[name]
    cfg = d2_cfg(yaml, d2_shapes)
    torch.manual_seed(0)
    mm, _ = _mmdet_model(mm_path)
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
    samples = _mmdet_samples(batch, pad_shape, out_shapes)

    with torch.no_grad():
        raw_d2 = d2.forward_outputs(images.tensor)
        raw_mm = mm.head(mm.extract_feat(images.tensor))
        assert len(raw_d2) == len(raw_mm) == 2
        raw_diff = [float((a - b).abs().max()) for a, b in zip(raw_d2, raw_mm)]
        torch.manual_seed(1)
        losses_d2 = d2.losses(raw_d2, *d2.batch_gt(batch, pad_shape, d2.device))
        torch.manual_seed(1)
        losses_mm = mm.loss(images.tensor, samples)
    assert set(losses_d2) == set(losses_mm) == keys
    diffs = {key: abs(float(losses_d2[key]) - float(losses_mm[key])) for key in keys}
    print(f'd2 vs mmdet {name}: raw {raw_diff}, losses', {k: f'{v:.1e}' for k, v in diffs.items()})
    assert max(raw_diff) <= 1e-6
    assert all(v <= 1e-6 for v in diffs.values()), diffs

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


def test_yaml_matches_mmdet_demo(d2_shapes):
    from mmengine.config import Config
    from insplug.detectron2.config import signature_defaults
    from insplug.mmdet.embedding_grouping.heads import (MetricSeedinessHead,
                                                        RecurrentPixelEmbeddingHead)
    import os.path as osp
    from d2_utils import REPO
    # recurrent embedding
    cfg = d2_cfg(MODELS['recurrent_embedding'][0], d2_shapes)
    head = Config.fromfile(osp.join(REPO, 'configs', MODELS['recurrent_embedding'][1])).model.head
    r = cfg.MODEL.INSPLUG.RECURRENT_EMBEDDING
    full = dict(signature_defaults(RecurrentPixelEmbeddingHead), **head)
    for key, value in r.LOSS.items():
        assert full[key.lower()] == value, key
    assert r.EMBED_DIMS == full['embed_dims'] and r.NUM_CLASSES == full['num_classes']
    test = dict(head.test_cfg)
    clus = dict(test.pop('clustering'))
    clus.pop('type')
    for key, value in clus.items():
        assert r.CLUSTERING[key.upper()] == value, key
    assert r.MIN_PIXELS == test['min_pixels'] and r.MAX_PER_IMG == test['max_per_img']
    # metric seediness
    cfg = d2_cfg(MODELS['metric_seediness'][0], d2_shapes)
    head = Config.fromfile(osp.join(REPO, 'configs', MODELS['metric_seediness'][1])).model.head
    m = cfg.MODEL.INSPLUG.METRIC_SEEDINESS
    full = dict(signature_defaults(MetricSeedinessHead), **head, **head.test_cfg)
    for key in ('num_classes', 'embed_dims', 'points_per_instance', 'iou_threshold',
                'embed_weight', 'seediness_weight', 'loss_stride', 'max_seeds', 'alpha',
                'min_seediness', 'min_pixels', 'max_per_img'):
        assert m[key.upper()] == full[key], key
    assert tuple(m.THRESHOLDS) == tuple(full['thresholds'])
