"""RefineMask against golden data of the official release (zhanggang001/RefineMask, mmdet 2.3).

The fixture ``tests/fixtures/official/refinemask/golden.pt`` is written by
``tools/official_parity/make_refinemask_golden.py --official-repo PATH`` (not run in CI). It holds
the official ``RefineMaskHead`` state_dict (official key layout, small widths: 16-channel inputs,
32 -> 16 -> 8 -> 4 instance channels, 3 classes, stages 14/28/56/112) and the official outputs.
Here the state_dict goes through the ``refinemask`` converter, is loaded strictly into insplug's
``RefineMaskHead`` and insplug is run on the same inputs.

Tolerances: forward and losses 1e-5 absolute (float64; measured max differences: forward 0.0,
losses <= 3e-8 as the official loss casts the stage 0-1 targets to float32);
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
        boundary_width=cfg['boundary_width'], start_stage=cfg['start_stage']).to(dtype)
    official = {PREFIX + k: v for k, v in golden['state_dict'].items()}
    converted = convert_state_dict('refinemask', official)
    assert all(k.startswith(PREFIX) for k in converted)
    head.load_state_dict({k[len(PREFIX):]: v for k, v in converted.items()}, strict=True)
    return head.eval()


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


# ------------------------------------------------------------ full-size checkpoints, detectron2
CONFIG = os.path.join(os.path.dirname(__file__), '..', '..', 'configs', 'refinemask_r50.py')


@pytest.fixture(scope='module')
def r50_model_state():
    from insplug.converters import build_model_state
    return build_model_state(CONFIG)


def full_size_official(golden, model_state):
    """A released-size official checkpoint (random tensors): the mask head in the official layout
    recorded from the release at its R50 size; ResNet, FPN, RPN and box head under the names
    mmdet 2.3 and 3.x share (``backbone.layer1.0.conv1``, ``neck.lateral_convs.0.conv``,
    ``rpn_head.rpn_cls``, ``roi_head.bbox_head.shared_fcs.0``, ...)."""
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
                for k, v in model_state.items() if not k.startswith(PREFIX)}
    official.update({PREFIX + k: torch.randn(s, generator=gen)
                     for k, s in golden['full_size_shapes'].items()})
    return official


def test_released_layout_fills_the_r50_config_strictly(golden, r50_model_state):
    from insplug.checkpoints.fit import check_state_dict_fit
    official = full_size_official(golden, r50_model_state)
    out = convert_state_dict('refinemask', official)
    fit = check_state_dict_fit(r50_model_state, out)
    assert fit.ok, fit.summary()
    assert len(out) == len(official)


def test_wrong_checkpoint_fails_clearly(golden):
    from insplug.converters import ConversionError
    sparse = {'encoder.fpn_laterals.0.weight': torch.zeros(1),
              'decoder.inst_branch.iam_conv.weight': torch.zeros(1)}
    with pytest.raises(ConversionError, match='looks like a sparseinst checkpoint'):
        convert_state_dict('refinemask', sparse)
    official = {PREFIX + k: v for k, v in golden['state_dict'].items()}
    official[PREFIX + 'stages.0.unknown.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match='stages.0.unknown.weight'):
        convert_state_dict('refinemask', official)


def detectron2_resnet50(prefix):
    """detectron2's ResNet-50 key layout (FrozenBN), written out independently of the converter."""
    keys = {f'{prefix}stem.conv1.weight'} | {f'{prefix}stem.conv1.norm.{p}' for p in
                                            ('weight', 'bias', 'running_mean', 'running_var')}
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        for b in range(blocks):
            convs = ['conv1', 'conv2', 'conv3'] + (['shortcut'] if b == 0 else [])
            for conv in convs:
                keys.add(f'{prefix}res{stage}.{b}.{conv}.weight')
                keys |= {f'{prefix}res{stage}.{b}.{conv}.norm.{p}' for p in
                         ('weight', 'bias', 'running_mean', 'running_var')}
    return keys


def test_to_detectron2_layout(golden, r50_model_state):
    """mmdet layout -> insplug's detectron2 RefineMask (``GeneralizedRCNN``: ResNet-FPN backbone
    ``backbone.bottom_up`` / ``fpn_lateral{2-5}`` / ``fpn_output{2-5}``, ``StandardRPNHead``,
    ``FastRCNNConvFCHead`` with 2 fc, ``FastRCNNOutputLayers``, and ``RefineMaskROIHeads`` whose
    ``mask_head`` is the same ``RefineMaskNet`` as in mmdet). Runs without detectron2."""
    from insplug.converters.refinemask import to_detectron2
    converted = convert_state_dict('refinemask', full_size_official(golden, r50_model_state))
    d2 = to_detectron2(converted)
    expected = detectron2_resnet50('backbone.bottom_up.')
    for level in range(2, 6):
        expected |= {f'backbone.fpn_lateral{level}.{p}' for p in ('weight', 'bias')}
        expected |= {f'backbone.fpn_output{level}.{p}' for p in ('weight', 'bias')}
    rpn = 'proposal_generator.rpn_head.'
    for name in (rpn + 'conv', rpn + 'objectness_logits', rpn + 'anchor_deltas',
                 'roi_heads.box_head.fc1',
                 'roi_heads.box_head.fc2', 'roi_heads.box_predictor.cls_score',
                 'roi_heads.box_predictor.bbox_pred'):
        expected |= {f'{name}.weight', f'{name}.bias'}
    head = RefineMaskHead(num_classes=80)
    expected |= {f'roi_heads.mask_head.{k}' for k in head.state_dict()}
    assert set(d2) == expected
    # detectron2's shapes for 80 classes, 3 anchors per location, 256-channel FPN
    assert tuple(d2['proposal_generator.rpn_head.objectness_logits.weight'].shape) == (3, 256, 1, 1)
    assert tuple(d2['proposal_generator.rpn_head.anchor_deltas.weight'].shape) == (12, 256, 1, 1)
    assert tuple(d2['roi_heads.box_head.fc1.weight'].shape) == (1024, 256 * 7 * 7)
    assert tuple(d2['roi_heads.box_predictor.cls_score.weight'].shape) == (81, 1024)
    assert tuple(d2['roi_heads.box_predictor.bbox_pred.weight'].shape) == (320, 1024)
    assert all(d2[f'roi_heads.mask_head.{k}'] is converted[PREFIX + k]
               for k in head.state_dict())
