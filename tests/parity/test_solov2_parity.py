"""SOLOv2 against golden data of the official detectron2 release (aim-uofa/AdelaiDet).

The fixture ``tests/fixtures/official/solov2/golden.pt`` is written by
``tools/official_parity/make_solov2_golden.py --official-repo PATH`` (not run in CI): the
official ``SOLOv2`` (adet/modeling/solov2) at small widths on fixed P2-P6 features, its
official-layout head state_dict, the heads' outputs, ``get_ground_truth`` targets, the two
losses, the inference of each image and ``matrix_nms``. The state_dict goes through the
``solov2`` converter and loads strictly into insplug's core modules and into mmdet 3's
``SOLOV2Head``.

Tolerances: forward 1e-5 absolute (float64; kernels stored in float32); targets identical;
losses 1e-5 relative (fvcore's focal loss is float32); inference scores 1e-5 absolute, labels
identical, masks 0 differing pixels.
"""
import os

import numpy as np
import pytest
import torch

from insplug.converters import convert_state_dict, detect_method
from insplug.core.postprocess.nms import matrix_nms
from insplug.core.solo import (MaskFeatBranch, SOLOv2InstanceBranch, flatten_levels, point_nms,
                               solo_targets_single, solov2_inference_single, solov2_losses)

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'official', 'solov2',
                       'golden.pt')
TOL = 1e-5


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def split_state(sd):
    mask = {k[len('mask_head.mask_feature_head.'):]: v for k, v in sd.items()
            if k.startswith('mask_head.mask_feature_head.')}
    ins = {k[len('mask_head.'):]: v for k, v in sd.items()
           if k.startswith('mask_head.') and not k.startswith('mask_head.mask_feature_head.')}
    assert len(mask) + len(ins) == len(sd)
    return ins, mask


@pytest.fixture(scope='module')
def modules(golden):
    c = golden['config']
    ins = SOLOv2InstanceBranch(c['fpn_channels'], c['instance_channels'], c['num_classes'],
                               c['num_masks'], c['num_grids']).double()
    mask = MaskFeatBranch(c['fpn_channels'], c['mask_channels'], c['num_masks'], 4).double()
    ins_sd, mask_sd = split_state(convert_state_dict('solov2', golden['state_dict']))
    ins.load_state_dict(ins_sd, strict=True)
    mask.load_state_dict(mask_sd, strict=True)
    return ins.eval(), mask.eval()


def unpack(masks_packed, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(masks_packed.numpy())[:n].reshape(shape).astype(bool))


def test_detect_method(golden):
    assert detect_method(golden['state_dict']) == 'solov2'


def test_forward(golden, modules):
    ins, mask = modules
    with torch.no_grad():
        cate, kernel = ins(golden['features'])
        feat = mask(golden['features'][:4])
    for a, b in zip(cate, golden['cate_pred']):
        assert (a - b).abs().max() <= TOL
    for a, b in zip(kernel, golden['kernel_pred']):
        assert (a.float() - b).abs().max() <= TOL
    assert (feat - golden['mask_pred']).abs().max() <= TOL


def insplug_targets(golden):
    c = golden['config']
    size = golden['mask_pred'].shape[-2:]
    return [solo_targets_single(b, l, m, size, c['num_classes'], c['num_grids'],
                                c['scale_ranges'], c['sigma'])
            for b, l, m in zip(golden['gt_boxes'], golden['gt_classes'], golden['gt_masks'])]


def test_targets(golden):
    ours = insplug_targets(golden)
    for img_ours, img_off in zip(ours, golden['targets']):
        for o, g in zip(img_ours, img_off):
            assert torch.equal(o['labels'], g['labels'])
            assert torch.equal(o['pos_index'], g['pos_index'])
            assert torch.equal(o['mask_targets'], g['mask_targets'])
            assert torch.equal(o['pos_mask'].nonzero().flatten(), g['pos_index'].unique())


def test_losses(golden):
    c = golden['config']
    kernels = [k.double() for k in golden['kernel_pred']]
    losses = solov2_losses(golden['cate_pred'], kernels, golden['mask_pred'],
                           insplug_targets(golden), c['num_classes'])
    # the official losses ran on float64 kernels; the fixture's are rounded to float32
    for name in ('loss_ins', 'loss_cate'):
        ref = golden['losses'][name].double()
        assert abs(float(losses[name]) - float(ref)) <= TOL * max(1.0, abs(float(ref))), name


@pytest.mark.parametrize('img', [0, 1])
def test_inference(golden, modules, img):
    c = golden['config']
    ins, mask = modules
    feats = [f[img:img + 1] for f in golden['features']]
    with torch.no_grad():
        cate, kernel = ins(feats)
        feat = mask(feats[:4])
    scores, kernels, strides = flatten_levels([point_nms(x.sigmoid()) for x in cate], kernel,
                                              c['strides'])
    s, labels, masks = solov2_inference_single(
        scores[0], kernels[0], strides, feat[0], tuple(golden['image_sizes'][img]),
        tuple(golden['ori_sizes'][img]), max_per_img=c['max_per_img'])
    ref = golden['results'][img]
    ref_masks = unpack(ref['masks_packed'], ref['mask_shape'])
    assert len(s) == len(ref['scores']) > 0
    assert (s - ref['scores']).abs().max() <= TOL
    assert torch.equal(labels, ref['classes'])
    assert int((masks != ref_masks).sum()) == 0


@pytest.mark.parametrize('kernel', ['gaussian', 'linear'])
def test_matrix_nms(golden, kernel):
    n = golden['nms']
    order, scores = matrix_nms(n['scores'], n['labels'], masks=n['masks'], kernel=kernel,
                               sigma=2.0)
    ref = n[kernel]  # official: decayed scores in input (already sorted) order
    # insplug's IoU matrix is float32 like the release's, its Gaussian decay one exp of the
    # difference of squares (the release divides two exps): a few 1e-8
    assert (scores - ref[order]).abs().max() <= TOL
    assert torch.equal(order.sort().values, torch.arange(len(ref)))


def test_mmdet_solov2_head_equals_official(golden):
    """mmdet 3's SOLOV2Head with the converted weights: same forward as the release."""
    from mmdet.models.dense_heads import SOLOV2Head
    c = golden['config']
    head = SOLOV2Head(
        num_classes=c['num_classes'], in_channels=c['fpn_channels'],
        feat_channels=c['instance_channels'], stacked_convs=4, strides=c['strides'],
        scale_ranges=c['scale_ranges'], pos_scale=c['sigma'], num_grids=c['num_grids'],
        cls_down_index=0,
        mask_feature_head=dict(feat_channels=c['mask_channels'], start_level=0, end_level=3,
                               out_channels=c['num_masks'], mask_stride=4,
                               norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)).double().eval()
    sd = {k[len('mask_head.'):]: v for k, v in
          convert_state_dict('solov2', golden['state_dict']).items()}
    head.load_state_dict(sd, strict=True)
    with torch.no_grad():
        kernel, cate, feat = head(tuple(golden['features']))
    for a, b in zip(cate, golden['cate_pred']):
        assert (a - b).abs().max() <= TOL
    for a, b in zip(kernel, golden['kernel_pred']):
        assert (a.float() - b).abs().max() <= TOL
    assert (feat - golden['mask_pred']).abs().max() <= TOL


def test_release_layout_converts(golden):
    """Every key of the released R-50 model is placed, in both layouts."""
    from insplug.converters.solov2 import official_to_detectron2
    sd = {k: torch.zeros(s) for k, s in golden['release_keys']}
    mmdet_sd = convert_state_dict('solov2', sd)
    assert len(mmdet_sd) == len(sd)
    assert any(k.startswith('neck.lateral_convs.0') for k in mmdet_sd)
    d2 = official_to_detectron2(sd)
    assert len(d2) == len(sd)
    assert {k for k in d2 if k.startswith('backbone.')} == \
        {k for k in sd if k.startswith('backbone.')}


def test_release_layout_fills_the_mmdet_config(golden, insplug_scope):
    """The converted release fills configs/solov2/solov2_r50_caffe_fpn_3x_adelaidet.py
    (mmdet's SOLOv2 with the caffe R-50) exactly: no missing, extra or misshapen tensor."""
    from mmengine.config import Config
    from insplug.checkpoints.fit import check_state_dict_fit
    from insplug.registry import MODELS
    config = os.path.join(os.path.dirname(__file__), '..', '..', 'configs', 'solov2',
                          'solov2_r50_caffe_fpn_3x_adelaidet.py')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    sd = convert_state_dict('solov2', {k: torch.zeros(s) for k, s in golden['release_keys']})
    model_sd = model.state_dict()
    assert not [k for k in model_sd if k not in sd and not k.endswith('num_batches_tracked')]
    assert not [k for k in sd if k not in model_sd]
    assert not [k for k in sd if sd[k].shape != model_sd[k].shape]
    fit = check_state_dict_fit(model_sd, sd)
    assert not fit.missing and not fit.unexpected and not fit.mismatched
