"""SparseInst through detectron2: the ``InsplugSparseInst`` meta-architecture.

* built from ``configs/detectron2/sparseinst_r18_shapes.yaml``, it runs a training step (four
  finite losses, gradients reach the decoder) and inference on demo images: image-sized
  boolean masks whose boxes are the masks' tight boxes (computed here with numpy), scores
  sorted; an image without instances trains with zero mask losses;
* the detectron2 and mmdet adapters, sharing one backbone and given the same encoder/decoder
  weights and the same padded batch (two images of different sizes), agree to float tolerance on
  all four losses and on the predicted scores, labels, masks and boxes.
"""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest

from d2_utils import INSTALL_HINT, REPO, d2_cfg, first_batch  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import Backbone, build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402

CONFIG = 'sparseinst_r18_shapes.yaml'
LOSSES = {'loss_cls', 'loss_mask', 'loss_dice', 'loss_obj'}


def tight_boxes(masks):
    """numpy reference: (n, 4) x1, y1, x2 + 1, y2 + 1 of each mask's foreground pixels."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0] * 4)
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


@pytest.fixture(scope='module')
def model_cfg(d2_shapes):
    cfg = d2_cfg(CONFIG, d2_shapes)
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
    assert model.decoder.inst_branch.cls_score.weight.grad.abs().sum() > 0
    assert model.encoder.fusion.weight.grad.abs().sum() > 0

    model.eval()
    images = first_batch(cfg, train=False, batch_size=2)
    with torch.no_grad():
        outputs = model(images)
    for inputs, out in zip(images, outputs):
        inst = out['instances']
        h, w = inputs['height'], inputs['width']
        assert inst.image_size == (h, w)
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        assert 0 < len(inst) <= cfg.MODEL.INSPLUG.SPARSEINST.MAX_DETECTIONS
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        assert inst.pred_classes.max() < 5
        np.testing.assert_array_equal(inst.pred_boxes.tensor.numpy(),
                                      tight_boxes(inst.pred_masks.numpy()))


def test_image_without_instances(model_cfg):
    model, cfg = model_cfg
    model.train()
    batch = first_batch(cfg, train=True, batch_size=1)
    h, w = batch[0]['image'].shape[-2:]
    batch[0]['instances'] = Instances((h, w), gt_classes=torch.zeros(0, dtype=torch.int64),
                                      gt_masks=BitMasks(torch.zeros(0, h, w, dtype=torch.bool)))
    losses = model(batch)
    assert float(losses['loss_cls']) > 0
    assert float(losses['loss_mask']) == float(losses['loss_dice']) == 0.0
    sum(losses.values()).backward()


class SharedBackbone(Backbone):
    """Gives an mmdet ResNet (C3-C5 tuple) detectron2's dict interface, weights shared."""

    def __init__(self, mm_backbone, shapes):
        super().__init__()
        self.mm = mm_backbone
        self.shapes = shapes

    def forward(self, x):
        return dict(zip(('res3', 'res4', 'res5'), self.mm(x)))

    def output_shape(self):
        return self.shapes


@pytest.fixture(scope='module')
def twins(d2_shapes):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from insplug.registry import MODELS
    cfg = d2_cfg(CONFIG, d2_shapes)
    torch.manual_seed(0)
    d2_model = build_model(cfg)
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'sparseinst_r18_shapes.py'))
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_model = MODELS.build(mm_cfg.model)
    mm_model.encoder.load_state_dict(d2_model.encoder.state_dict())
    mm_model.decoder.load_state_dict(d2_model.decoder.state_dict())
    d2_model.backbone = SharedBackbone(mm_model.backbone, d2_model.backbone.output_shape())

    # two training images, the second cropped to 224 x 192 (padding and cropping differ)
    batch = first_batch(cfg, train=True, batch_size=2)
    image = batch[1]['image'][:, :224, :192]
    masks = batch[1]['instances'].gt_masks.tensor[:, :224, :192]
    keep = masks.flatten(1).any(1)
    batch[1] = dict(image=image, instances=Instances(
        (224, 192), gt_classes=batch[1]['instances'].gt_classes[keep],
        gt_masks=BitMasks(masks[keep])))
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    return SimpleNamespace(d2=d2_model, mm=mm_model, batch=batch)


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
        sample.gt_instances = InstanceData(
            labels=gt.gt_classes, masks=BitmapMasks(masks, h, w),
            bboxes=torch.as_tensor(tight_boxes(masks)))
        samples.append(sample)
    return samples


def test_parity_with_mmdet(twins):
    t = twins
    images = t.d2.preprocess_image(t.batch)
    pad_shape = tuple(images.tensor.shape[-2:])
    assert pad_shape == (256, 256) and images.image_sizes[1] == (224, 192)
    samples = mmdet_samples(t.batch, pad_shape)

    t.d2.train()
    t.mm.train()
    losses_d2 = t.d2(t.batch)
    losses_mm = t.mm.loss(images.tensor, samples)
    assert set(losses_d2) == set(losses_mm) == LOSSES
    for key in LOSSES:
        torch.testing.assert_close(losses_d2[key], losses_mm[key], rtol=1e-4, atol=1e-6,
                                   msg=key)

    t.d2.eval()
    t.mm.eval()
    with torch.no_grad():
        out_d2 = t.d2([dict(image=x['image'], height=x['height'], width=x['width'])
                       for x in t.batch])
        out_mm = t.mm.predict(images.tensor, samples, rescale=True)
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-6)
        assert torch.equal(a.pred_classes, b.labels)
        assert a.pred_masks.shape == b.masks.shape
        assert (a.pred_masks == b.masks).float().mean() > 0.999
        torch.testing.assert_close(a.pred_boxes.tensor, b.bboxes, atol=1.0, rtol=0)
