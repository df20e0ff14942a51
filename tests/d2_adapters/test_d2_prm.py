"""PRM / CountSeg through detectron2: ``InsplugPRM`` / ``InsplugCountSeg`` agree with the mmdet
``PRMSegmentor`` / ``CountSegSegmentor``.

The mmdet models (ResNet-18 up to stage 2, stride 8) get random weights and BN statistics;
they go through ``mmdet_to_detectron2`` and load into the models of
``configs/detectron2/{prm,countseg}_r18_shapes.yaml``. On the same batch (two 64 px images of
coloured rectangles) both give the same raw maps (class response / density, abs 1e-5), the
same losses (abs 1e-6; CountSeg stage 1 and stage 2 with the same seed for the absent-class
sampling) and the same predicted masks (0 differing pixels), labels and scores (abs 1e-6).
The image-level dataset view deletes every annotation, the mapped training batch carries no
``instances`` (so no box or mask can reach the loss) and the model refuses inputs that do.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402

import insplug.mmdet  # noqa: E402,F401
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.prm import (InsplugCountSeg, InsplugPRM, image_labels_only,  # noqa: E402
                                    mmdet_to_detectron2)
from insplug.registry import MODELS  # noqa: E402

H = W = 64
K = 5
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
LABELS = [[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
COUNTS = [[2, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
# random weights: every peak passes, 4 per image at most (CPU time)
TEST = dict(class_threshold=-1e9, peak_threshold=-1e9, max_peaks=4, size_limits=(0.002, 0.5))


def models(kind, stage1_iters=0):
    torch.manual_seed(0)
    extra = dict(fc_channels=30) if kind == 'countseg' else {}
    train = dict(stage1_iters=stage1_iters) if kind == 'countseg' else \
        dict(sub_pixel_locating_factor=2)
    mm = MODELS.build(dict(
        type='CountSegSegmentor' if kind == 'countseg' else 'PRMSegmentor', num_classes=K,
        in_channels=128,
        backbone=dict(type='mmdet.ResNet', depth=18, num_stages=2, out_indices=(1,),
                      strides=(1, 2), dilations=(1, 1), norm_eval=False, frozen_stages=-1),
        data_preprocessor=dict(type='mmdet.DetDataPreprocessor', mean=MEAN, std=STD,
                               pad_size_divisor=32),
        proposal_source=dict(type='ColourRegionProposals'),
        train_cfg=train, test_cfg=TEST, **extra))
    with torch.no_grad():
        for name, b in mm.named_buffers():
            if name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
            elif name.endswith('running_mean'):
                b.normal_(0, 0.1)
    node = 'COUNTSEG' if kind == 'countseg' else 'PRM'
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, f'{kind}_r18_shapes.yaml'))
    opts = []
    for k, v in TEST.items():
        opts += [f'MODEL.INSPLUG.{node}.TEST.{k.upper()}', list(v) if isinstance(v, tuple) else v]
    if kind == 'countseg':
        opts += [f'MODEL.INSPLUG.{node}.TRAIN.STAGE1_ITERS', stage1_iters]
    cfg.merge_from_list(opts)
    d2 = build_model(cfg)
    sd = {k: v for k, v in mm.state_dict().items() if not k.startswith('data_preprocessor')}
    missing, unexpected = d2.load_state_dict(mmdet_to_detectron2(sd), strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith('num_batches_tracked') for k in missing), missing
    return mm, d2


def batch():
    """Two RGB images (0-255) of flat rectangles on a flat background."""
    imgs = torch.full((2, 3, H, W), 30.0)
    imgs[0, :, 8:30, 6:28] = torch.tensor([200., 40., 40.])[:, None, None]
    imgs[0, :, 36:58, 30:60] = torch.tensor([40., 200., 60.])[:, None, None]
    imgs[1, :, 20:50, 14:44] = torch.tensor([60., 60., 220.])[:, None, None]
    samples, inputs = [], []
    for i in range(2):
        samples.append(DetDataSample(metainfo=dict(
            img_shape=(H, W), ori_shape=(H, W), scale_factor=(1.0, 1.0), img_path=f'{i}.png',
            gt_image_labels=np.array(LABELS[i], np.float32),
            gt_image_counts=np.array(COUNTS[i], np.int64))))
        inputs.append(dict(image=imgs[i].clone(), height=H, width=W, file_name=f'{i}.png',
                           image_labels=LABELS[i], image_counts=COUNTS[i]))
    norm = (imgs - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return norm, samples, inputs


def test_registered_names():
    assert META_ARCH_REGISTRY.get('InsplugPRM') is InsplugPRM
    assert META_ARCH_REGISTRY.get('InsplugCountSeg') is InsplugCountSeg
    assert InsplugPRM.num_classes_key == 'MODEL.INSPLUG.PRM.NUM_CLASSES'
    assert InsplugCountSeg.num_classes_key == 'MODEL.INSPLUG.COUNTSEG.NUM_CLASSES'


def _compare_predictions(mm, d2, norm, samples, inputs):
    mm.eval()
    d2.eval()
    p_mm = [s.pred_instances for s in mm.predict(norm, samples)]
    with torch.no_grad():
        p_d2 = [o['instances'] for o in d2(inputs)]
    total = 0
    for a, b in zip(p_mm, p_d2):
        assert a.masks.shape == b.pred_masks.shape
        assert int((a.masks != b.pred_masks).sum()) == 0
        assert torch.equal(a.labels, b.pred_classes)
        assert torch.allclose(a.scores, b.scores, atol=1e-6, rtol=0)
        assert torch.allclose(a.bboxes, b.pred_boxes.tensor)
        total += len(b)
    assert total > 0


@pytest.mark.parametrize('kind', ['prm', 'countseg'])
def test_raw_maps_agree(kind):
    mm, d2 = models(kind)
    norm, samples, inputs = batch()
    mm.eval()
    d2.eval()
    with torch.no_grad():
        a = mm._forward(norm)
        b = d2._test_maps(d2.preprocess_image(inputs).tensor)
    a = (a,) if kind == 'prm' else a
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert (x - y).abs().max() < 1e-5


def test_prm_loss_and_masks_agree():
    mm, d2 = models('prm')
    norm, samples, inputs = batch()
    mm.train()
    d2.train()
    l_mm, l_d2 = mm.loss(norm, samples), d2(inputs)
    assert set(l_mm) == set(l_d2) == {'loss_cls'}
    assert abs(float(l_mm['loss_cls']) - float(l_d2['loss_cls'])) < 1e-6
    _compare_predictions(mm, d2, norm, samples, inputs)


@pytest.mark.parametrize('stage1_iters', [1000, 0])
def test_countseg_losses_agree(stage1_iters):
    mm, d2 = models('countseg', stage1_iters)
    norm, samples, inputs = batch()
    mm.train()
    d2.train()
    torch.manual_seed(3)
    l_mm = mm.loss(norm, samples)
    torch.manual_seed(3)
    l_d2 = d2(inputs)
    assert set(l_mm) == set(l_d2) and l_mm
    for k in l_mm:
        assert abs(float(l_mm[k]) - float(l_d2[k])) < 1e-6, (k, l_mm[k], l_d2[k])


def test_countseg_masks_agree():
    mm, d2 = models('countseg')
    _compare_predictions(mm, d2, *batch())


def test_image_level_view_and_mapper_drop_instances(d2_shapes):
    from detectron2.data import DatasetCatalog, DatasetMapper

    from insplug.detectron2.prm import register_image_labels
    from insplug.detectron2.train_net import setup_cfg
    src = d2_shapes['train']
    name = register_image_labels(src + '_labels', src)
    records, originals = DatasetCatalog.get(name), DatasetCatalog.get(src)
    assert len(records) == len(originals)
    for r, o in zip(records[:20], originals[:20]):
        assert 'annotations' not in r
        cls = [a['category_id'] for a in o['annotations']]
        assert r['image_labels'] == [float(k in cls) for k in range(K)]
        assert r['image_counts'] == [sum(a['category_id'] == k and not a.get('iscrowd', 0)
                                         for a in o['annotations']) for k in range(K)]
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'prm_r18_shapes.yaml'),
                    ['DATASETS.TRAIN', (name,), 'DATALOADER.NUM_WORKERS', 0])
    mapper = DatasetMapper(cfg, is_train=True)
    mapped = [mapper(dict(r)) for r in records[:2]]
    for m in mapped:
        assert 'instances' not in m and 'annotations' not in m
    cfg.defrost()
    cfg.MODEL.INSPLUG.PRM.TEST.MAX_PEAKS = 2
    model = build_model(cfg)
    model.train()
    losses = model(mapped)
    assert set(losses) == {'loss_cls'} and torch.isfinite(losses['loss_cls'])
    with pytest.raises(ValueError, match='image-level labels only'):
        model([dict(mapped[0], instances=object())])


def test_image_labels_only_hand_worked():
    recs = [dict(file_name='a', annotations=[
        dict(category_id=1, bbox=[0, 0, 2, 2], segmentation=[[0, 0, 1, 1, 1, 0]]),
        dict(category_id=1, bbox=[0, 0, 2, 2]),
        dict(category_id=3, bbox=[0, 0, 2, 2], iscrowd=1)])]
    out = image_labels_only(recs, 4)
    assert out[0]['image_labels'] == [0.0, 1.0, 0.0, 1.0]
    assert out[0]['image_counts'] == [0, 2, 0, 0]
    assert 'annotations' not in out[0] and 'annotations' in recs[0]
