"""BoxCaseg through detectron2: ``InsplugBoxCaseg`` agrees with the mmdet ``BoxCaseg``.

The mmdet model (ResNet-18 trunk, 32 px crops) gets random weights and statistics; they go
through ``to_detectron2`` of the ``boxcaseg`` converter and load strictly into the model of
``configs/detectron2/boxcaseg_r18_shapes.yaml``. On the same batch (one box image, one salient
image, same jitter seed) both give the same three losses (abs 1e-6), and on the same boxes the
same box-conditioned masks (0 differing pixels). ``boxes_only`` removes every segmentation.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT  # noqa: F401

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import insplug.mmdet  # noqa: E402,F401
from insplug.converters.boxcaseg import to_detectron2  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.boxcaseg import InsplugBoxCaseg, boxes_only  # noqa: E402
from insplug.registry import MODELS  # noqa: E402

H, W, S = 64, 64, 32
BOXES = torch.tensor([[4., 6., 40., 30.], [20., 10., 60., 44.], [30., 20., 46., 40.]])
LABELS = torch.tensor([0, 2, 1])


def models():
    torch.manual_seed(0)
    mm = MODELS.build(dict(
        type='BoxCaseg', crop_size=S, in_channels=64 + 128 + 256 + 512,
        backbone=dict(type='mmdet.ResNet', depth=18, out_indices=(0, 1, 2, 3), norm_eval=False,
                      frozen_stages=-1),
        data_preprocessor=dict(type='mmdet.DetDataPreprocessor')))
    with torch.no_grad():
        for name, b in mm.named_buffers():
            if name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
            elif name.endswith('running_mean'):
                b.normal_(0, 0.1)
        for p in mm.head.parameters():
            p.normal_(0, 0.05)
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, 'boxcaseg_r18_shapes.yaml'))
    cfg.merge_from_list(['MODEL.PIXEL_MEAN', [0.0, 0.0, 0.0], 'MODEL.PIXEL_STD', [1.0, 1.0, 1.0],
                         'MODEL.INSPLUG.BOXCASEG.CROP_SIZE', S,
                         'MODEL.INSPLUG.BOXCASEG.MAX_BOX_CROPS', 0])
    d2 = build_model(cfg)
    sd = {k: v for k, v in mm.state_dict().items() if not k.startswith('data_preprocessor')}
    missing, unexpected = d2.load_state_dict(to_detectron2(sd), strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith('num_batches_tracked') for k in missing), missing
    return mm, d2


def batch():
    g = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 3, H, W, generator=g)
    sal = torch.zeros(1, H, W, dtype=torch.bool)
    sal[0, 10:50, 12:40] = True
    return imgs, sal


def test_registered_name():
    assert META_ARCH_REGISTRY.get('InsplugBoxCaseg') is InsplugBoxCaseg


def test_losses_and_masks_agree():
    mm, d2 = models()
    imgs, sal = batch()
    samples = []
    for i in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W),
                                        scale_factor=(1.0, 1.0)))
        other = torch.tensor([[12., 10., 40., 50.]])
        inst = InstanceData(bboxes=BOXES.clone() if i == 0 else other,
                            labels=LABELS.clone() if i == 0 else torch.tensor([0]))
        if i == 1:
            inst.masks = BitmapMasks(sal.numpy().astype('uint8'), H, W)
        s.gt_instances = inst
        samples.append(s)
    inputs = []
    for i in range(2):
        inst = Instances((H, W))
        inst.gt_boxes = Boxes(samples[i].gt_instances.bboxes.clone())
        inst.gt_classes = samples[i].gt_instances.labels.clone()
        if i == 1:
            inst.gt_masks = BitMasks(sal.clone())
        inputs.append(dict(image=imgs[i], instances=inst, height=H, width=W))
    mm.train()
    d2.train()
    torch.manual_seed(5)
    l_mm = mm.loss(imgs, samples)
    torch.manual_seed(5)
    l_d2 = d2(inputs)
    assert set(l_mm) == set(l_d2) == {'loss_mil', 'loss_pairwise', 'loss_salient'}
    for k in l_mm:
        assert abs(float(l_mm[k]) - float(l_d2[k])) < 1e-6, (k, l_mm[k], l_d2[k])
    mm.eval()
    d2.eval()
    with torch.no_grad():
        p_mm = mm.predict(imgs[:1], samples[:1])[0].pred_instances
        p_d2 = d2(inputs[:1])[0]['instances']
    assert int((p_mm.masks != p_d2.pred_masks).sum()) == 0
    assert p_mm.masks.any()
    assert torch.equal(p_d2.pred_classes, LABELS)


def test_boxes_only_drops_segmentation():
    recs = [dict(file_name='a', annotations=[dict(bbox=[0, 0, 2, 2], segmentation=[[0, 0, 1, 1]],
                                                  category_id=0)])]
    out = boxes_only(recs)
    assert 'segmentation' not in out[0]['annotations'][0]
    assert 'segmentation' in recs[0]['annotations'][0]    # the source is untouched
