"""SOLO and Decoupled SOLO against golden data of the official release (WXinlong/SOLO, mmdet 1.x).

The fixture ``tests/fixtures/official/solo/golden.pt`` is written by
``tools/official_parity/make_solo_golden.py --official-repo PATH`` (not run in CI): the official
``SOLOHead`` and ``DecoupledSOLOHead`` at small widths on fixed P2-P6 features, their
official-layout state_dicts, training-mode outputs, ``solo_target_single`` targets, losses and
``get_seg`` results. The state_dicts go through the ``solo`` converter and load strictly into
insplug's :class:`SOLOInstanceBranch` (and into mmdet 3's heads).

Tolerances: outputs 1e-5 absolute (the fixture stores them in float32); targets identical
(official labels are 1-based with 0 = background); losses 1e-5 relative; inference scores 1e-5,
labels identical, masks 0 differing pixels.
"""
import os

import numpy as np
import pytest
import torch

from insplug.converters import convert_state_dict, detect_method
from insplug.core.solo import (SOLOInstanceBranch, flatten_levels, point_nms,
                               solo_inference_single, solo_losses, solo_mask_probs,
                               solo_v1_targets_single)

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'official', 'solo',
                       'golden.pt')
TOL = 1e-5
HEADS = ['vanilla', 'decoupled']


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def build(golden, head):
    c = golden['config']
    module = SOLOInstanceBranch(c['in_channels'], c['feat_channels'], c['num_classes'],
                                c['num_grids'], 2, head == 'decoupled').double()
    sd = convert_state_dict('solo', golden[head]['state_dict'])
    module.load_state_dict({k[len('mask_head.'):]: v for k, v in sd.items()}, strict=True)
    return module


def unpack(packed, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy())[:n].reshape(shape).astype(bool))


def targets_of(golden, sizes):
    c = golden['config']
    return [solo_v1_targets_single(b, lab - 1, m, sizes, c['num_classes'], c['num_grids'],
                                   c['scale_ranges'], c['strides'], c['sigma'])
            for b, lab, m in zip(golden['gt_boxes'], golden['gt_labels'], golden['gt_masks'])]


@pytest.mark.parametrize('head', HEADS)
def test_detect_method(golden, head):
    assert detect_method(golden[head]['state_dict']) == 'solo'


@pytest.mark.parametrize('head', HEADS)
def test_forward_targets_losses(golden, head):
    c = golden['config']
    module = build(golden, head)
    outs = module(golden['features'])
    for ours, ref in zip(outs, golden[head]['outputs']):
        for a, b in zip(ours, ref):
            assert (a.float() - b).abs().max() <= TOL
    sizes = [tuple(m.shape[-2:]) for m in outs[0]]
    targets = targets_of(golden, sizes)
    k = c['num_classes']
    for img, ref in zip(targets, golden[head]['targets']):
        for lvl, t in enumerate(img):
            official = ref['labels'][lvl]
            assert torch.equal(t['labels'], torch.where(official == 0, k, official - 1))
            assert torch.equal(t['pos_mask'].nonzero().flatten(), ref['pos_index'][lvl])
            assert torch.equal(t['mask_targets'], ref['mask_targets'][lvl])
    if head == 'decoupled':
        losses = solo_losses(outs[0], outs[2], targets, k, mask_logits_y=outs[1])
    else:
        losses = solo_losses(outs[0], outs[1], targets, k)
    for name in ('loss_ins', 'loss_cate'):
        ref = float(golden[head]['losses'][name])
        assert abs(float(losses[name]) - ref) <= TOL * max(1.0, abs(ref)), name


@pytest.mark.parametrize('head', HEADS)
def test_inference(golden, head):
    c = golden['config']
    module = build(golden, head).eval()
    with torch.no_grad():
        outs = module(golden['features'])
    cls_scores = [point_nms(x.sigmoid()) for x in outs[-1]]
    scores, _, strides = flatten_levels(cls_scores, cls_scores, c['strides'])
    probs = [solo_mask_probs(m, outs[0][0].shape[-2:]) for m in outs[:-1]]
    t = c['test']
    for i, ref in enumerate(golden[head]['results']):
        masks_in = (dict(probs_x=probs[0][i], probs_y=probs[1][i], num_grids=c['num_grids'])
                    if head == 'decoupled' else dict(mask_probs=probs[0][i]))
        s, labels, masks = solo_inference_single(
            scores[i], strides, img_shape=tuple(c['img_shapes'][i]),
            ori_shape=tuple(c['ori_shapes'][i]), score_thr=t['score_thr'],
            mask_thr=t['mask_thr'], nms_pre=t['nms_pre'], update_thr=t['update_thr'],
            max_per_img=t['max_per_img'], nms_kernel=t['kernel'], nms_sigma=t['sigma'],
            **masks_in)
        assert len(s) == len(ref['scores']) > 0
        assert (s - ref['scores']).abs().max() <= TOL
        assert torch.equal(labels, ref['labels'])
        assert int((masks != unpack(ref['masks_packed'], ref['mask_shape'])).sum()) == 0


@pytest.mark.parametrize('head', HEADS)
def test_mmdet_head_equals_official(golden, head):
    """mmdet 3's SOLOHead / DecoupledSOLOHead with the converted weights: same outputs."""
    from mmdet.models.dense_heads import DecoupledSOLOHead, SOLOHead
    c = golden['config']
    cls = DecoupledSOLOHead if head == 'decoupled' else SOLOHead
    module = cls(num_classes=c['num_classes'], in_channels=c['in_channels'],
                 feat_channels=c['feat_channels'], stacked_convs=2, strides=c['strides'],
                 scale_ranges=c['scale_ranges'], pos_scale=c['sigma'],
                 num_grids=c['num_grids']).double().train()
    sd = convert_state_dict('solo', golden[head]['state_dict'])
    module.load_state_dict({k[len('mask_head.'):]: v for k, v in sd.items()}, strict=True)
    outs = module(tuple(golden['features']))
    for ours, ref in zip(outs, golden[head]['outputs']):
        for a, b in zip(ours, ref):
            assert (a.float() - b).abs().max() <= TOL


def test_solov2_release_layout_fills_the_mmdet_config(golden):
    """The released SOLOv2 R-50 heads (WXinlong/SOLO key layout, recorded from the official
    modules) plus mmdet-named ResNet / FPN keys (mmdet 1.x names them as mmdet 3) fill
    configs/solov2/solov2_r50_fpn_3x_coco.py exactly."""
    from mmengine.config import Config
    from insplug.checkpoints.fit import check_state_dict_fit
    from insplug.registry import MODELS
    config = os.path.join(os.path.dirname(__file__), '..', '..', 'configs', 'solov2',
                          'solov2_r50_fpn_3x_coco.py')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    model_sd = MODELS.build(cfg.model).state_dict()
    official = {k: torch.zeros(s) for k, s in golden['solov2_release_head_keys']}
    official.update({k: v for k, v in model_sd.items() if k.startswith(('backbone.', 'neck.'))})
    assert detect_method(official) == 'solo'
    fit = check_state_dict_fit(model_sd, convert_state_dict('solo', official))
    assert not fit.missing and not fit.unexpected and not fit.mismatched, fit
