"""insplug's faithful FCOS against golden data of AdelaiDet's FCOS (adet/modeling/fcos).

Fixtures ``tests/fixtures/official/fcos_adelaidet/{blendmask,default}.pt`` are written by
``tools/official_parity/make_fcos_adelaidet_golden.py`` (not run in CI): the official
``FCOS`` proposal generator at small widths (32 channels, 2 tower convs, 3 classes, 3 images
of 128 x 160, one without objects) with a BlendMask top layer, for BlendMask's settings
(no Scale, THRESH_WITH_CTR, GIoU) and AdelaiDet's defaults (Scale, threshold on cls, IoU loss).

The official state_dict goes through the FCOS rules of the converters, is loaded strictly into
``FaithfulFCOSHead`` and insplug runs on the same features.

Tolerances: forward and losses 1e-5 absolute (float64, but the official normalisers are
float32: AdelaiDet's ``reduce_mean`` casts with ``.float()``, and fvcore's scripted focal loss
returns float32; measured loss differences <= 8e-8); targets: exact (labels, matched
objects) and 1e-12 (regression targets); post-processed scores 1e-5 and boxes 1e-4 (the
official inference runs in float32 because detectron2's NMS casts boxes to float32: one ulp is
3.1e-5 at 256-512 px), labels/order exact.
"""
import os

import pytest
import torch
from mmengine.structures import InstanceData

from insplug.converters.common import rename_keys
from insplug.converters.fcos import fcos_head_rules, fix_fcos_scales
from insplug.core.fcos import (fcos_locations, fcos_losses, fcos_targets, level_point_info,
                               regress_ranges_from_sizes)
from insplug.registry import MODELS

HERE = os.path.dirname(__file__)
CASES = ['blendmask', 'default']
TOL = 1e-5
# float32 boxes (the official inference runs in float32): one ulp is 3.1e-5 at 256-512 px,
# and machines with different vector maths differ by an ulp, so 1e-5 was sub-ulp
BOX_TOL = 1e-4


def load(case):
    return torch.load(os.path.join(HERE, '..', 'fixtures', 'official', 'fcos_adelaidet',
                                   f'{case}.pt'), weights_only=True)


def build_head(g, dtype=torch.float64):
    c = g['config']
    head = MODELS.build(dict(
        type='FaithfulFCOSHead', num_classes=c['num_classes'], in_channels=c['channels'],
        feat_channels=c['channels'], stacked_convs=c['num_convs'], strides=c['strides'],
        sizes_of_interest=c['sizes_of_interest'], center_sample_radius=c['radius'],
        use_scale=c['use_scale'], loss_type=c['loc_loss_type'], top_channels=c['top_channels'],
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        test_cfg=dict(score_thr=c['score_thr'], nms_pre=c['nms_pre'],
                      thresh_with_ctr=c['thresh_with_ctr'], score='sqrt',
                      nms=dict(type='nms', iou_threshold=c['nms_thr']),
                      max_per_img=c['max_per_img'])))
    rules = fcos_head_rules('proposal_generator.fcos_head.', 'bbox_head.', c['num_convs'], 'GN')
    rules.append((r'^top_layer\.(weight|bias)$', r'bbox_head.top_layer.\1'))
    sd = fix_fcos_scales(rename_keys(g['state_dict'], rules, 'fcos'))
    head.load_state_dict({k[len('bbox_head.'):]: v for k, v in sd.items()}, strict=True)
    return head.to(dtype)


def gt_instances(g, dtype=torch.float64):
    return [InstanceData(bboxes=b.to(dtype), labels=l)
            for b, l in zip(g['gt_boxes'], g['gt_labels'])]


@pytest.mark.parametrize('case', CASES)
def test_targets_match_official(case):
    g = load(case)
    c = g['config']
    feats = g['features']
    pts = fcos_locations([f.shape[-2:] for f in feats], c['strides'], torch.float64)
    assert torch.equal(torch.cat(pts), g['locations'].double())
    pts, pstr, rng = level_point_info(pts, c['strides'],
                                      regress_ranges_from_sizes(c['sizes_of_interest']))
    for i, (b, l) in enumerate(zip(g['gt_boxes'], g['gt_labels'])):
        labels, reg, inds = fcos_targets(pts, pstr, rng, b, l, c['num_classes'], c['radius'])
        assert torch.equal(labels, g['target_labels'][i])
        assert torch.equal(inds, g['target_gt_inds'][i])
        pos = labels != c['num_classes']
        assert (reg[pos] / pstr[pos, None] - g['target_reg'][i][pos]).abs().max() < 1e-12 \
            if pos.any() else True
    assert (g['target_labels'] != c['num_classes']).sum() > 10  # the data has positives


@pytest.mark.parametrize('case', CASES)
def test_losses_and_positive_infos_match_official(case):
    g = load(case)
    head = build_head(g).train()
    outs = head(g['features'])
    losses = head.loss_by_feat(*outs, batch_gt_instances=gt_instances(g),
                               batch_img_metas=[{} for _ in g['gt_boxes']])
    names = {'loss_cls': 'loss_fcos_cls', 'loss_bbox': 'loss_fcos_loc',
             'loss_centerness': 'loss_fcos_ctr'}
    for ours, theirs in names.items():
        assert abs(float(losses[ours]) - float(g['losses'][theirs])) < TOL, ours
    infos = head.get_positive_infos()
    # official positives are level-major; compare as sets of (image, gt, ctr target, top feats)
    n_pos = sum(len(p) for p in infos)
    assert n_pos == len(g['pos_inds'])
    ours = torch.cat([torch.cat([torch.full((len(p), 1), float(i), dtype=torch.float64),
                                 p.pos_assigned_gt_inds[:, None].double(),
                                 p.ctr_targets[:, None], p.param_preds], 1)
                      for i, p in enumerate(infos)])
    offsets = torch.tensor([0] + [len(b) for b in g['gt_boxes'][:-1]]).cumsum(0)
    im = g['pos_im_inds']
    theirs = torch.cat([im[:, None].double(), (g['pos_gt_inds'] - offsets[im])[:, None].double(),
                        g['pos_ctr_targets'][:, None], g['pos_top_feats']], 1)
    ours = ours[torch.argsort(ours[:, 3])]
    theirs = theirs[torch.argsort(theirs[:, 3])]
    assert (ours - theirs).abs().max() < TOL
    assert abs(float(infos[0].loss_denorm) - g['loss_denorm']) < TOL


@pytest.mark.parametrize('case', CASES)
def test_predictions_match_official(case):
    g = load(case)
    head = build_head(g, torch.float32).eval()
    with torch.no_grad():
        outs = head([f.float() for f in g['features']])
        metas = [dict(img_shape=tuple(s), ori_shape=tuple(s), scale_factor=(1.0, 1.0))
                 for s in g['image_sizes']]
        res = head.predict_by_feat(*outs, batch_img_metas=metas, rescale=False)
    for r, p in zip(res, g['pred']):
        assert len(r) == len(p['scores']) > 0
        assert torch.equal(r.labels, p['labels'])
        assert (r.scores - p['scores']).abs().max() < TOL
        assert (r.bboxes - p['boxes']).abs().max() < BOX_TOL
        assert torch.equal(r.points, p['locations'])
        assert torch.equal(r.levels, p['levels'])
        assert (r.param_preds - p['top_feats']).abs().max() < TOL


def test_losses_through_core_function_equal_head():
    """The head adds nothing to the core maths: fcos_losses on flattened tensors."""
    g = load('blendmask')
    c = g['config']
    head = build_head(g).train()
    cls, reg, ctr, _ = head(g['features'])
    flat = lambda ms, k: torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, k)  # noqa
                                    for m in ms], 1)
    pts, pstr, rng = level_point_info(
        fcos_locations([f.shape[-2:] for f in g['features']], c['strides'], torch.float64),
        c['strides'], regress_ranges_from_sizes(c['sizes_of_interest']))
    tg = [fcos_targets(pts, pstr, rng, b, l, c['num_classes'], c['radius'])
          for b, l in zip(g['gt_boxes'], g['gt_labels'])]
    losses, _ = fcos_losses(flat(cls, c['num_classes']).reshape(-1, c['num_classes']),
                            flat(reg, 4).reshape(-1, 4), flat(ctr, 1).reshape(-1),
                            torch.cat([t[0] for t in tg]),
                            torch.cat([t[1] / pstr[:, None] for t in tg]), c['num_classes'])
    assert abs(float(losses['loss_bbox']) - float(g['losses']['loss_fcos_loc'])) < TOL
