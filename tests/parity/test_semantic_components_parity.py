"""Golden comparisons with the official releases of the semantic-segmentation components
(fixture: tools/official_parity/make_semantic_components_golden.py).

Each official state dict is converted with ``convert_state_dict`` and loaded STRICTLY into
insplug's core module; forward outputs agree within 1e-10 (abs, float64) and the
Lovasz-softmax loss and its gradient within 1e-6 (abs, float32 as the release computes).
"""
import os.path as osp

import pytest
import torch

from insplug.converters import convert_state_dict
from insplug.core.backbones.drn import DRN
from insplug.core.backbones.espnet import ESPNetEncoder
from insplug.core.layers.object_context import BaseOC
from insplug.core.layers.upernet import UPerNetFusion
from insplug.core.losses.lovasz import lovasz_softmax

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'semantic_components',
                   'golden.pt')


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def strip(prefix, sd):
    assert all(k.startswith(prefix) for k in sd), sorted(sd)[:5]
    return {k[len(prefix):]: v for k, v in sd.items()}


@pytest.mark.parametrize('case', [0, 1, 2])
@pytest.mark.parametrize('ci,classes', [(0, 'present'), (1, 'all'), (2, [1, 3])])
@pytest.mark.parametrize('per_image', [False, True])
def test_lovasz_softmax_loss_and_gradient(golden, case, ci, classes, per_image):
    logits = golden[f'lovasz/{case}/logits'].clone().requires_grad_()
    labels = golden[f'lovasz/{case}/labels']
    loss = lovasz_softmax(torch.softmax(logits, 1), labels, classes, per_image, ignore=255)
    loss.backward()
    key = f'lovasz/{case}/{ci}/{int(per_image)}'
    assert (loss - golden[key + '/loss']).abs().item() < 1e-6
    assert (logits.grad - golden[key + '/grad']).abs().max().item() < 1e-6


@pytest.mark.parametrize('arch', ['drn_c_26', 'drn_c_58', 'drn_d_22'])
def test_drn_levels_and_logits(golden, arch):
    sd = strip('backbone.', convert_state_dict('drn', golden[f'drn/{arch}/state_dict']))
    model = DRN(arch, out_indices=range(8), channels=golden[f'drn/{arch}/channels'],
                num_classes=3).double().eval()
    fc = {k: v for k, v in golden[f'drn/{arch}/state_dict'].items() if k.startswith('fc.')}
    assert fc and not any(k.startswith('fc.') for k in sd)  # the converter drops the classifier
    model.load_state_dict({**sd, **fc}, strict=True)
    with torch.no_grad():
        outs = model(golden[f'drn/{arch}/input'])
    expected = list(golden[f'drn/{arch}/levels']) + [golden[f'drn/{arch}/logits']]
    assert len(outs) == len(expected)
    for ours, theirs in zip(outs, expected):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() < 1e-10


def test_espnet_encoder_logits(golden):
    sd = golden['espnet/state_dict']
    converted = strip('backbone.', convert_state_dict('espnet', sd))
    model = ESPNetEncoder(golden['espnet/p'], golden['espnet/q'], num_classes=5).double().eval()
    converted['classifier.conv.weight'] = sd['classifier.conv.weight']  # dropped on purpose
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        logits = model(golden['espnet/input'])[-1]
    assert (logits - golden['espnet/logits']).abs().max().item() < 1e-10


def test_upernet_fusion_logits(golden):
    sd = golden['upernet/state_dict']
    converted = strip('fusion.', convert_state_dict('upernet', sd))
    model = UPerNetFusion((4, 8, 12, 16), 4, ppm_channels=512, num_classes=3).double().eval()
    converted.update({k: v for k, v in sd.items() if k.startswith('conv_last.1.')})
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        y = model(golden['upernet/inputs'])
    # the release's decoder returns log-softmax scores (use_softmax=False, training form)
    y = torch.log_softmax(y, dim=1)
    assert y.shape == golden['upernet/logits'].shape
    assert (y - golden['upernet/logits']).abs().max().item() < 1e-10


def test_ocnet_base_oc_output(golden):
    sd = convert_state_dict('ocnet_base_oc', golden['ocnet/state_dict'])
    model = BaseOC(8, 8, 4, 4).double().eval()
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        y = model(golden['ocnet/input'])
    assert (y - golden['ocnet/output']).abs().max().item() < 1e-10
    assert (y - model.conv_bn_dropout(torch.cat([torch.zeros_like(y),
                                                 golden['ocnet/input']], 1))).abs().max() > 1e-3
