"""``PyramidPoolingNeck`` plugs into a stock mmdet Mask R-CNN (after FPN, or before it).

The config inherits mmdet's own ``mask-rcnn_r50_fpn_1x_coco.py`` (``default_scope='mmdet'``), so
the neck is named ``insplug.PyramidPoolingNeck`` as a user of a stock config would write it.
"""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from insplug.mmdet.layers.pyramid_pooling import PyramidPoolingNeck
from mmdet.registry import MODELS

FPN = dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32, num_outs=5)
# after the FPN on P5 (the last level the RoI heads read), or on the backbone's C5 before it
AFTER_FPN = [FPN, dict(type='insplug.PyramidPoolingNeck', in_channels=32, levels=(-2,))]
ON_BACKBONE = [dict(type='insplug.PyramidPoolingNeck', in_channels=[64, 128, 256, 512],
                    levels=(-1,)), FPN]


def mask_rcnn_cfg(tmp_path, neck):
    """mmdet's own Mask R-CNN config with the given neck, shrunk for CPU: ResNet-18, 32 FPN
    channels, 5 classes, fewer proposals and RoI samples."""
    path = tmp_path / 'mask_rcnn_ppm.py'
    path.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
        "model = dict(\n"
        "    backbone=dict(depth=18, init_cfg=None),\n"
        f"    neck={neck!r},\n"
        "    rpn_head=dict(in_channels=32, feat_channels=32),\n"
        "    roi_head=dict(\n"
        "        bbox_roi_extractor=dict(out_channels=32),\n"
        "        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=5),\n"
        "        mask_roi_extractor=dict(out_channels=32),\n"
        "        mask_head=dict(in_channels=32, conv_out_channels=32, num_classes=5)),\n"
        "    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),\n"
        "                   rcnn=dict(sampler=dict(num=64))),\n"
        "    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)))\n")
    return Config.fromfile(str(path))


def fake_batch():
    rng = np.random.RandomState(0)
    inputs, samples = [], []
    for idx in range(2):
        masks = np.zeros((1, 96, 96), np.uint8)
        masks[0, 20:60, 30:80] = 1
        sample = DetDataSample(metainfo=dict(img_id=idx, img_shape=(96, 96),
                                             ori_shape=(96, 96), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[30.0, 20.0, 80.0, 60.0]]),
                                           labels=torch.tensor([idx]),
                                           masks=BitmapMasks(masks, 96, 96))
        inputs.append(torch.from_numpy(rng.randint(0, 255, (3, 96, 96)).astype(np.uint8)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('neck', [AFTER_FPN, ON_BACKBONE], ids=['after_fpn', 'on_backbone'])
def test_mask_rcnn_with_pyramid_pooling_neck(tmp_path, neck):
    cfg = mask_rcnn_cfg(tmp_path, neck)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ppms = [m for m in model.modules() if isinstance(m, PyramidPoolingNeck)]
    assert len(ppms) == 1
    data = model.data_preprocessor(fake_batch(), training=True)
    losses = model(**data, mode='loss')
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    # the pooled branches are on the gradient path of the detector's losses
    assert ppms[0].ppms[0].bottleneck[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(fake_batch(), training=False), mode='predict')
    assert len(results) == 2 and 'masks' in results[0].pred_instances


def test_neck_keeps_other_levels_and_checks_levels():
    neck = PyramidPoolingNeck(in_channels=[4, 8], levels=(1,))
    feats = (torch.randn(1, 4, 9, 9), torch.randn(1, 8, 5, 3))
    out = neck(feats)
    assert out[0] is feats[0] and out[1].shape == feats[1].shape
    assert PyramidPoolingNeck(in_channels=8)(feats[1]).shape == feats[1].shape  # one map
    with pytest.raises(ValueError, match='out of range'):
        PyramidPoolingNeck(in_channels=[4, 8], levels=(2,))
    with pytest.raises(ValueError, match='levels'):
        PyramidPoolingNeck(in_channels=8, levels=(3,))(feats)
    bn = PyramidPoolingNeck(in_channels=8, norm_cfg=dict(type='BN'), bottleneck_kernel=3)
    assert bn(torch.randn(2, 8, 7, 7)).shape == (2, 8, 7, 7)
