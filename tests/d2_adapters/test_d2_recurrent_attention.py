"""Recurrent attention through detectron2: the ``InsplugRecurrentAttention`` meta-architecture.

* the shapes yaml builds, trains one step on a mapped demo batch (finite box / segmentation /
  score / class losses, gradients reach the controller CNN, the LSTM and the patch DCNN) and
  predicts image-sized boolean masks with tight boxes;
* agreement with the mmdet adapter (``configs/demo/recurrent_attention_shapes.py``): the mmdet
  model's state_dict loads strictly (same ``net.*`` keys); on the same batch of two images of
  different sizes (same random stream for the GT-feeding decisions and noise, iteration 0 in
  both frameworks) the network inputs, every loss term (abs 1e-6), the raw outputs (abs 1e-6)
  and the final instances (masks 0 differing pixels, scores, labels, boxes) are equal;
* the yaml equals the mmdet demo config key by key (network, knob, test settings, normalisation).
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402

from insplug.detectron2.recurrent_attention import InsplugRecurrentAttention  # noqa: E402

YAML = 'recurrent_attention_shapes.yaml'
MMDET = osp.join(REPO, 'configs', 'demo', 'recurrent_attention_shapes.py')
LOSSES = {'loss_box', 'loss_segm', 'loss_score', 'loss_cls'}


def test_registered_name():
    assert META_ARCH_REGISTRY.get('InsplugRecurrentAttention') is InsplugRecurrentAttention


def mmdet_model():
    import insplug.mmdet  # noqa: F401  registers the insplug scope
    from insplug.registry import MODELS
    cfg = Config.fromfile(MMDET)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


def mmdet_batch(batch, mean, std):
    """The mapped detectron2 batch as mmdet inputs: normalised, zero-padded, metainfo."""
    imgs = [(x['image'].float() - mean) / std for x in batch]
    h = max(i.shape[1] for i in imgs)
    w = max(i.shape[2] for i in imgs)
    inputs = torch.zeros(len(imgs), 3, h, w)
    samples = []
    for b, (img, x) in enumerate(zip(imgs, batch)):
        inputs[b, :, :img.shape[1], :img.shape[2]] = img
        s = DetDataSample(metainfo=dict(img_shape=tuple(img.shape[1:]),
                                        ori_shape=(x['height'], x['width'])))
        inst = x['instances']
        gt = InstanceData()
        gt.masks = BitmapMasks(inst.gt_masks.tensor.numpy().astype('uint8'), *img.shape[1:])
        gt.labels = inst.gt_classes.clone()
        s.gt_instances = gt
        samples.append(s)
    return inputs, samples


@pytest.fixture(scope='module')
def models(d2_shapes):
    torch.manual_seed(0)
    mm, mm_cfg = mmdet_model()
    cfg = d2_cfg(YAML, d2_shapes)
    d2 = build_model(cfg)
    missing, unexpected = d2.load_state_dict(mm.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return mm, d2, cfg, mm_cfg


def test_yaml_matches_mmdet_config(models):
    mm, d2, cfg, mm_cfg = models
    assert d2.num_classes == mm.num_classes == 5
    for name in ('height', 'width', 'filter_h', 'filter_w', 'timespan', 'skip_flags',
                 'min_box_padding', 'box_padding_ratio', 'fixed_gamma', 'dynamic_var'):
        assert getattr(d2.net, name) == getattr(mm.net, name), name
    assert {k: tuple(v.shape) for k, v in d2.net.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in mm.net.state_dict().items()}
    knob = mm_cfg.model.train_cfg.knob
    for key, value in knob.items():
        assert d2.knob[key] == value, key
    for key, value in mm_cfg.model.test_cfg.items():
        assert d2.test_cfg[key] == value, key
    pre = mm_cfg.model.data_preprocessor
    assert d2.pixel_mean.flatten().tolist() == pytest.approx(pre.mean)
    assert d2.pixel_std.flatten().tolist() == pytest.approx(pre.std)
    assert cfg.SOLVER.BASE_LR == mm_cfg.optim_wrapper.optimizer.lr


def test_agreement_with_mmdet(models, d2_shapes):
    mm, d2, cfg, _ = models
    batch = first_batch(cfg, train=True, batch_size=2)
    # two different sizes: shrink the second image (and its masks) to 200 x 232
    import torch.nn.functional as F
    x = batch[1]
    x['image'] = F.interpolate(x['image'][None].float(), size=(200, 232), mode='bilinear',
                               align_corners=False)[0]
    inst = x['instances']
    from detectron2.structures import BitMasks, Instances
    m = F.interpolate(inst.gt_masks.tensor[None].float(), size=(200, 232), mode='nearest')[0]
    new = Instances((200, 232))
    new.gt_masks = BitMasks(m > 0.5)
    new.gt_classes = inst.gt_classes
    x['instances'] = new
    x['height'], x['width'] = 200, 232
    batch[0]['height'], batch[0]['width'] = batch[0]['image'].shape[1:]
    inputs, samples = mmdet_batch(batch, d2.pixel_mean, d2.pixel_std)

    # network inputs
    _, d2_in = d2.preprocess_image(batch)
    mm_in = mm._inputs(inputs, samples)
    diffs = {'inputs': float((d2_in - mm_in).abs().max())}
    assert diffs['inputs'] <= 1e-6

    # losses at iteration 0 in both frameworks, same random stream
    mm.train()
    d2.train()
    hub = MessageHub.get_instance('recurrent_attention_agreement')
    hub.update_info('iter', 0)
    torch.manual_seed(1)
    mm_losses = mm.loss(inputs, samples)
    with EventStorage(0):
        torch.manual_seed(1)
        d2_losses = d2(batch)
    assert set(mm_losses) == set(d2_losses) == LOSSES
    for key in LOSSES:
        assert torch.isfinite(d2_losses[key])
        diffs[key] = abs(float(mm_losses[key]) - float(d2_losses[key]))
        assert diffs[key] < 1e-6, key
    sum(d2_losses.values()).backward()
    for name in ('ctrl_cnn.convs.0.weight', 'controller.lstm.weight',
                 'attn_dcnn.deconvs.0.weight', 'score.weight', 'cls.weight'):
        grad = dict(d2.net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name

    # inference
    mm.eval()
    d2.eval()
    with torch.no_grad():
        mm_raw = mm._forward(inputs, samples)
        d2_raw = d2.net(d2_in)
        for key in ('masks', 'scores', 'cls_logits', 'attn_box'):
            diffs[key] = float((mm_raw[key] - d2_raw[key]).abs().max())
            assert diffs[key] < 1e-6, key
        # low thresholds so that the untrained models output instances (one-label split)
        for model in (mm, d2):
            model.test_cfg['score_thr'] = 0.0
            model.test_cfg['mask_threshold'] = 0.0
        mm_out = mm.predict(inputs, samples)
        d2_out = d2(batch)
    for s, d, x in zip(mm_out, d2_out, batch):
        a, b = s.pred_instances, d['instances']
        assert b.image_size == (x['height'], x['width'])
        assert b.pred_masks.dtype == torch.bool
        assert a.masks.shape == b.pred_masks.shape
        assert int((a.masks != b.pred_masks).sum()) == 0
        assert torch.allclose(a.scores, b.scores)
        assert torch.equal(a.labels, b.pred_classes)
        assert torch.allclose(a.bboxes, b.pred_boxes.tensor)
    assert sum(len(d['instances']) for d in d2_out) > 0
    print('mmdet vs detectron2 max abs differences:', diffs)


def test_cvppp_yaml_matches_mmdet_config():
    """The CVPPP yaml builds the network of configs/recurrent_attention/recurrent_attention_cvppp.py
    (same parameter names and shapes, knob, test settings, normalisation)."""
    from detectron2.config import get_cfg

    from insplug.detectron2 import add_insplug_config
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, 'recurrent_attention_cvppp.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    d2 = build_model(cfg)
    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'recurrent_attention',
                                      'recurrent_attention_cvppp.py'))
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(mm_cfg.model)
    assert {k: tuple(v.shape) for k, v in d2.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in mm.state_dict().items()}
    for key, value in mm_cfg.model.train_cfg.knob.items():
        assert d2.knob[key] == value, key
    for key, value in mm_cfg.model.test_cfg.items():
        assert d2.test_cfg[key] == value, key
    assert d2.pixel_std.flatten().tolist() == mm_cfg.model.data_preprocessor.std
    assert cfg.SOLVER.BASE_LR == mm_cfg.optim_wrapper.optimizer.lr
    assert cfg.SOLVER.MAX_ITER == mm_cfg.max_iters
