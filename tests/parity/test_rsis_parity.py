"""RSIS against the official release (imatge-upc/rsis), golden data from
``tools/official_parity/make_rsis_golden.py``: skip projections, the recurrent decoder's
forward (5 steps), the GT sequence, Hungarian matching and the three loss terms of ``runIter``
(no curriculum / curriculum limit 2 / more objects than ``gt_maxseqlen``).

Weights: the official encoder (skips) + decoder state_dict converted by the ``rsis`` converter
and loaded strictly. Tolerances: forward and losses 1e-5 absolute (float64 both sides); GT
sequence and matched GT masks / classes exact.
"""
import os.path as osp

import pytest
import torch

from insplug.converters import ConversionError, convert_state_dict
from insplug.core.rsis import (RSISDecoder, RSISSkips, rsis_decode, rsis_losses,
                               sequence_order, train_num_steps)

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'rsis', 'golden.pt')


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def build(golden):
    sd = dict(golden['encoder_state_dict'])
    sd.update(golden['decoder_state_dict'])
    conv = convert_state_dict('rsis', sd)
    skips = RSISSkips(golden['skip_in'], golden['hidden_size']).double().eval()
    dec = RSISDecoder(golden['hidden_size'], golden['num_classes']).double().eval()
    skips.load_state_dict({k[len('head.skips.'):]: v for k, v in conv.items()
                           if k.startswith('head.skips.')}, strict=True)
    dec.load_state_dict({k[len('head.decoder.'):]: v for k, v in conv.items()
                         if k.startswith('head.decoder.')}, strict=True)
    assert all(k.startswith(('head.skips.', 'head.decoder.')) for k in conv)
    return skips, dec


def test_forward(golden):
    skips, dec = build(golden)
    with torch.no_grad():
        s = skips(golden['trunk_feats'])
        for a, b in zip(s, golden['skips']):
            assert (a - b).abs().max() < 1e-5
        fw = golden['forward']
        t = fw['mask_logits'].shape[1]
        masks, cls, stop = rsis_decode(dec, golden['skips'], t, fw['mask_logits'].shape[-2:])
    assert (masks - fw['mask_logits']).abs().max() < 1e-5
    assert (torch.softmax(cls, -1) - fw['class_probs']).abs().max() < 1e-5
    assert (stop - fw['stop_logits']).abs().max() < 1e-5


def gt_from_maps(ins, seg):
    """Instance and class maps (H, W) -> masks (M, H, W) bool, labels (M,) (class ids 1..)."""
    ids = [i for i in torch.unique(ins).tolist() if i > 0]
    masks = torch.stack([ins == i for i in ids])
    labels = torch.stack([seg[ins == i][0] for i in ids]).long()
    return masks, labels


@pytest.mark.parametrize('case', ['plain', 'curriculum', 'truncated'])
def test_targets_matching_losses(golden, case):
    _, dec = build(golden)
    c = golden['cases'][case]
    b, g = c['target_masks'].shape[:2]
    h, w = c['instance_maps'].shape[-2:]
    seq_masks, seq_labels = [], []
    for i in range(b):
        masks, labels = gt_from_maps(c['instance_maps'][i].long(), c['class_maps'][i].long())
        order = sequence_order(masks, c['gt_maxseqlen'])
        seq_masks.append(masks[order])
        seq_labels.append(labels[order])
        # the release's GT sequence: same masks, classes and valid flags
        m = len(order)
        assert torch.equal(c['target_masks'][i, :m], masks[order].flatten(1))
        assert not c['target_masks'][i, m:].any()
        assert torch.equal(c['target_columns'][i, :m, 0].long(), labels[order])
        assert c['target_columns'][i, :, 1].sum() == m
    limit = c['maxseqlen'] if c['limit'] < 0 else min(c['maxseqlen'], c['limit'])
    t = train_num_steps([len(x) for x in seq_masks], limit)
    assert t == c['num_steps']
    with torch.no_grad():
        masks, cls, stop = rsis_decode(dec, golden['skips'], t, (h, w))
    out = rsis_losses(masks, cls, stop, seq_masks, seq_labels, max_gt=c['gt_maxseqlen'],
                      stop_balance_weight=golden['stop_balance_weight'])
    diffs = {k: abs(float(out[k]) - c[f'loss_{k}']) for k in ('mask', 'cls', 'stop')}
    total = (golden['iou_weight'] * out['mask'] + golden['class_weight'] * out['cls']
             + golden['stop_weight'] * out['stop'])
    diffs['total'] = abs(float(total) - c['loss_total'])
    print(case, diffs)
    assert max(diffs.values()) < 1e-5, diffs
    # matching: the GT the release placed at each supervised step
    for i, (pi, gi) in enumerate(out['assignments']):
        k = len(pi)
        assert torch.equal(pi, torch.arange(k))
        assert torch.equal(c['matched_gt_masks'][i, pi], seq_masks[i][gi].flatten(1))
        assert torch.equal(c['matched_gt_classes'][i, pi].long(), seq_labels[i][gi])


def test_converter_torchvision_trunk_and_errors(golden):
    """The ``base.`` trunk keys of a torchvision ResNet land on mmdet's ResNet names; an unknown
    key (the VGG encoder) fails naming it."""
    import torchvision
    from mmdet.models.backbones import ResNet
    trunk = torchvision.models.resnet18()
    sd = {f'base.{k}': v for k, v in trunk.state_dict().items()}
    sd.update(golden['decoder_state_dict'])
    conv = convert_state_dict('rsis', sd)
    ours = ResNet(depth=18)
    ours.load_state_dict({k[len('backbone.'):]: v for k, v in conv.items()
                          if k.startswith('backbone.')}, strict=True)
    assert not any('fc.' in k for k in conv)
    prefixed = {f'decoder.{k}': v for k, v in golden['decoder_state_dict'].items()}
    assert set(convert_state_dict('rsis', prefixed)) == {
        k for k in conv if k.startswith('head.decoder.')}
    bad = dict(golden['decoder_state_dict'], **{'base.features.0.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match='features'):
        convert_state_dict('rsis', bad)
