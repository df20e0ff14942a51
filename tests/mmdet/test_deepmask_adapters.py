"""DeepMask mmdet adapters: registered names, the official-setting configs (architecture sizes
from DeepMask.lua / SharpMask.lua, hand-counted), the SharpMask stage freezing, and a stock
Mask R-CNN roi_head training on DeepMask proposals."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet import registry as mmdet_registry
from mmengine.config import Config
from mmengine.registry import DefaultScope

from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'deepmask')


def build(name, options=None):
    cfg = Config.fromfile(osp.join(CFG, name))
    if options:
        cfg.merge_from_dict(options)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


def test_names_are_new_and_registered():
    for name in ('DeepMask', 'DeepMaskRPNHead', 'DeepMaskMaskRCNN'):
        assert mmdet_registry.MODELS.get(name) is None
        assert MODELS.get(name) is not None


def test_official_deepmask_and_sharpmask_sizes():
    model, cfg = build('deepmask_r50_coco.py')
    net = model.net
    assert (net.window_size, net.context_size, net.feat_size, net.label_size) == (160, 192, 10, 112)
    # DeepMask.lua: 1x1 conv 1024->128, Linear(128*10*10 -> 512), Linear(512 -> 56*56),
    # score Linear(512 -> 1024) + Linear(1024 -> 1)
    head = sum(p.numel() for p in net.head.parameters())
    assert head == (1024 * 128 + 128) + (128 * 100 * 512 + 512) + (512 * 3136 + 3136) \
        + (512 * 1024 + 1024) + (1024 + 1)
    # trunk: torchvision's ResNet-50 without layer4 / fc (same keys and shapes, so its
    # ImageNet weights load; BN frozen: buffers, not parameters)
    from torchvision.models import resnet50
    ref = {k: v.shape for k, v in resnet50().state_dict().items()
           if not k.startswith(('layer4', 'fc')) and not k.endswith('num_batches_tracked')}
    assert {k: v.shape for k, v in net.trunk.state_dict().items()} == ref
    assert not any(p.requires_grad for n, p in net.trunk.named_parameters() if 'bn' in n)
    assert cfg.model.test_cfg.smin == -2.5 and cfg.model.test_cfg.smax == 0.5
    scfg = Config.fromfile(osp.join(CFG, 'sharpmask_r50_coco.py'))
    assert scfg.model.train_cfg.stage == 'sharpmask' and scfg.model.net.label_size == 160
    from insplug.core.deepmask import SharpMaskRefinement
    r = SharpMaskRefinement(**scfg.model.net.sharpmask)
    # SharpMask.lua: refs[0] Linear(512 -> 10*10*32), horizontal 3x3 convs 1024-64-32-16, ...
    assert r.v0.weight.shape == (3200, 512)
    assert [tuple(m[0].weight.shape[:2]) for m in r.horizontal] == [(64, 1024), (64, 512),
                                                                     (64, 256), (32, 64)]
    assert scfg.optim_wrapper.optimizer.momentum == 0.0


def _batch(num=2, size=96):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    images = torch.randn(num, 3, size, size)
    samples = []
    for i in range(num):
        masks = np.zeros((2, size, size), np.uint8)
        masks[0, 10:40, 12:50] = 1
        masks[1, 50 - i * 5:90, 40:80] = 1
        boxes = torch.tensor([[12.0, 10, 50, 40], [40.0, 50 - i * 5, 80, 90]])
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        pad_shape=(size, size), batch_input_shape=(size, size),
                                        scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(labels=torch.tensor([0, 1]), bboxes=boxes,
                                      masks=BitmapMasks(masks, size, size))
        samples.append(s)
    return images, samples


def test_sharpmask_stage_trains_only_the_refinement():
    model, _ = build('sharpmask_r18_shapes.py')
    images, samples = _batch()
    model.train()
    losses = model.loss(images, samples)
    assert set(losses) == {'loss_refine'}
    losses['loss_refine'].backward()
    grads = {n.split('.')[1] for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {'refine'}
    model.eval()
    with torch.no_grad():
        out = model.predict(images, samples)
    assert out[0].pred_instances.masks.shape == (100, 96, 96)


def test_mask_rcnn_roi_head_trains_on_deepmask_proposals():
    # three pyramid scales, 50 proposals: seconds on CPU
    model, _ = build('mask_rcnn_deepmask_proposals_shapes.py', {
        'model.rpn_head.deepmask_test_cfg.smin': -1.0,
        'model.rpn_head.deepmask_test_cfg.smax': 0.0,
        'model.rpn_head.deepmask_test_cfg.num_proposals': 50})
    images, samples = _batch()
    model.train()
    losses = model.loss(images, samples)
    assert {'rpn_loss_mask', 'rpn_loss_score', 'loss_mask', 'loss_cls', 'loss_bbox'} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.rpn_head.net.head.mask.weight.grad.abs().sum() > 0
    assert model.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model.predict(images, samples)
    assert out[0].pred_instances.masks.shape[-2:] == (96, 96)
    # the rpn head's proposals are the boxes of DeepMask's masks
    model.rpn_head.images = images
    props = model.rpn_head.predict(None, samples)
    direct = model.rpn_head.deepmask_proposals(images, samples, False)
    keep = ((direct[0].bboxes[:, 2:] - direct[0].bboxes[:, :2]) >= 1).all(1)
    assert torch.equal(props[0].bboxes, direct[0].bboxes[keep])
    with pytest.raises(RuntimeError):
        model.rpn_head.images = None
        model.rpn_head.predict(None, samples)
