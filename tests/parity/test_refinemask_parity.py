"""RefineMask against golden data of the official release (zhanggang001/RefineMask, mmdet 2.3).

The fixture ``tests/fixtures/official/refinemask/golden.pt`` is written by
``tools/official_parity/make_refinemask_golden.py --official-repo PATH`` (not run in CI). It holds
the official ``RefineMaskHead`` state_dict (official key layout, small widths: 16-channel inputs,
32 -> 16 -> 8 -> 4 instance channels, 3 classes, stages 14/28/56/112) and the official outputs.
Here the state_dict goes through the ``refinemask`` converter, is loaded strictly into insplug's
``RefineMaskHead`` and insplug is run on the same inputs.

Tolerances: forward and losses 1e-5 absolute (float64; measured max differences are 0 / ~1e-16);
targets, boundary bands and pasted test masks: 0 differing pixels.
"""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.structures import InstanceData

from insplug.converters import convert_state_dict, detect_method
from insplug.core.refinemask import boundary_band, refinement_losses, semantic_loss
from insplug.mmdet.refinemask import RefineMaskHead

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'official', 'refinemask',
                       'golden.pt')
PREFIX = 'roi_head.mask_head.'
TOL = 1e-5


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def build_head(golden, dtype=torch.float64):
    cfg = golden['config']
    head = RefineMaskHead(
        num_classes=cfg['num_classes'], stage_sup_size=cfg['stage_sup_size'],
        num_convs_instance=2, conv_in_channels_instance=cfg['in_channels'],
        conv_out_channels_instance=cfg['inst_channels'], num_convs_semantic=4,
        conv_in_channels_semantic=cfg['in_channels'],
        conv_out_channels_semantic=cfg['sem_channels'], dilations=(1, 3, 5),
        semantic_out_stride=4, stage_instance_loss_weight=cfg['stage_weights'],
        boundary_width=cfg['boundary_width'], start_stage=cfg['start_stage'])
    official = {PREFIX + k: v for k, v in golden['state_dict'].items()}
    converted = convert_state_dict('refinemask', official)
    assert all(k.startswith(PREFIX) for k in converted)
    head.load_state_dict({k[len(PREFIX):]: v for k, v in converted.items()}, strict=True)
    return head.to(dtype).eval()


def test_converter_detects_and_maps_one_to_one(golden):
    official = {PREFIX + k: v for k, v in golden['state_dict'].items()}
    assert detect_method(official) == 'refinemask'
    converted = convert_state_dict('refinemask', official)
    assert len(converted) == len(official)
    # every tensor is placed unchanged (a pure renaming)
    by_id = {id(v): k for k, v in official.items()}
    assert all(id(v) in by_id for v in converted.values())


def test_forward_matches_official(golden):
    head = build_head(golden)
    with torch.no_grad():
        stage_logits, semantic_logits = head(golden['roi_feats'], golden['finest'],
                                             golden['rois'], golden['roi_labels'])
    assert torch.allclose(semantic_logits, golden['semantic_pred'], rtol=0, atol=TOL)
    assert len(stage_logits) == len(golden['stage_preds'])
    for ours, theirs in zip(stage_logits, golden['stage_preds']):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= TOL


def _sampling_results(golden):
    return [SimpleNamespace(pos_priors=b, pos_assigned_gt_inds=i)
            for b, i in zip(golden['pos_bboxes'], golden['pos_assigned_gt_inds'])]


def _gt(golden, kind):
    out = []
    for bitmaps, polys, (h, w) in zip(golden['gt_bitmaps'], golden['gt_polygons'],
                                      golden['gt_sizes']):
        if kind == 'bitmap':
            masks = BitmapMasks(bitmaps.numpy(), h, w)
        else:
            masks = PolygonMasks([[np.array(p, dtype=np.float64) for p in inst]
                                  for inst in polys], h, w)
        out.append(InstanceData(masks=masks))
    return out


@pytest.mark.parametrize('kind', ['bitmap', 'polygon'])
def test_targets_match_official(golden, kind):
    head = build_head(golden)
    stage_targets, semantic = head.get_targets(_sampling_results(golden), _gt(golden, kind),
                                               golden['semantic_pred'].shape[-2:])
    expected = golden[f'stage_targets_{kind}']
    for ours, theirs in zip(stage_targets, expected):
        assert ours.shape == theirs.shape
        assert int((ours.bool() != theirs.bool()).sum()) == 0
    assert int((semantic.bool() != golden['semantic_target'].bool()).sum()) == 0


def test_boundary_bands_match_official_block_targets(golden):
    for name, block in golden['block_targets'].items():
        width, stage = int(name[1]), int(name.split('stage')[1])
        target = golden['stage_targets_bitmap'][stage].float()
        band = boundary_band(target, width)
        assert int((band != (block == 1)).sum()) == 0, name


def test_losses_match_official(golden):
    head = build_head(golden)
    targets = [t.double() for t in golden['stage_targets_bitmap']]
    losses = refinement_losses(golden['stage_preds'], targets, golden['config']['boundary_width'],
                               golden['config']['start_stage'])
    for k, (ours, theirs) in enumerate(zip(losses, golden['stage_losses'])):
        assert abs(float(ours) - float(theirs)) <= TOL, k
    sem = semantic_loss(golden['semantic_pred'], golden['semantic_target'].double())
    assert abs(float(sem) - float(golden['loss_semantic'])) <= TOL
    # the adapter's weighted sum against the official RefineRoIHead path (float32 targets there)
    total = sum(w * l for w, l in zip(head.stage_instance_loss_weight, losses))
    assert abs(float(total) - float(golden['loss_instance_roi_head'])) <= TOL


def test_pasted_test_masks_match_official(golden):
    head = build_head(golden, torch.float32)
    det, labels = golden['test_det'], golden['test_labels']
    scale = golden['test_scale_factor']
    with torch.no_grad():
        sem_feats, sem_logits = head.forward_semantic(golden['test_finest'])
        stage_logits = head.forward_instances(golden['test_roi_feats'], sem_feats, sem_logits,
                                              golden['test_rois'], labels)
        logits = head.test_logits(stage_logits)
    results = InstanceData(bboxes=det[:, :4] * scale, labels=labels, scores=det[:, 4])
    meta = dict(scale_factor=(float(scale[0]), float(scale[1])),
                ori_shape=tuple(golden['test_ori_shape']))
    out = head.predict_by_feat([logits], [results], [meta],
                               SimpleNamespace(mask_thr_binary=0.5), rescale=True)[0]
    expected = golden['test_masks']
    assert out.masks.shape == expected.shape
    assert int((out.masks != expected).sum()) == 0
    assert int(expected.sum()) > 0
