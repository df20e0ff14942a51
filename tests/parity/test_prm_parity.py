"""PRM and CountSeg against golden data of the official releases (ZhouYanzhao/PRM pytorch
branch, GuoleiSun/CountSeg).

The fixture (``tools/official_parity/make_prm_golden.py``) holds a tiny FC-ResNet (ResNet-18
layout, widths 4-32) in each release's key layout, the inputs and the official outputs, all
computed in float64. The weights go through the ``prm`` / ``countseg`` converters, load strictly
into insplug's detectors, and insplug runs on the same inputs (float64).

Tolerances: scores, maps, losses, gradients and peak response maps 1e-5 relative to each
quantity's largest magnitude; peak lists and top-count peak masks exact; resized proposals and
class maps, retrieved masks and labels: 0 differing pixels / exact.
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

import insplug.mmdet  # noqa: F401
from insplug.converters import convert_state_dict
from insplug.core.countseg import sample_absent_classes, stage1_loss, stage2_loss, \
    top_count_peak_mask
from insplug.core.prm import (peak_backprop_mode, peak_response_maps,
                              peak_stimulation, peak_values, release_resize, retrieve_instances,
                              select_inference_peaks)
from insplug.registry import MODELS

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'prm', 'golden.pt')
BACKBONE = dict(type='ResNet', depth=18, base_channels=4, num_stages=4, out_indices=(3,),
                norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch',
                init_cfg=None)


def close(a, b, tol=1e-5):
    a, b = a.double(), b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    assert diff <= tol * max(b.abs().max().item(), 1e-12), (diff, b.abs().max().item())
    return diff


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def build(kind, golden):
    if kind == 'prm':
        model = MODELS.build(dict(type='PRMSegmentor', backbone=BACKBONE, num_classes=3,
                                  in_channels=32))
        sd = convert_state_dict('prm', golden['prm_state_dict'])
    else:
        model = MODELS.build(dict(type='CountSegSegmentor', backbone=BACKBONE, num_classes=2,
                                  in_channels=32, fc_channels=6))
        sd = convert_state_dict('countseg', golden['cs_state_dict'])
    model.load_state_dict(sd, strict=True)
    return model.double()


def test_prm_training_forward_loss_and_gradients(golden):
    model = build('prm', golden).train()
    x = golden['prm_inputs'].double()
    crm = model.class_maps(x, factor=2)
    scores, _, _ = peak_stimulation(crm, 3, 'median')
    loss = F.multilabel_soft_margin_loss(scores, golden['prm_labels'])
    loss.backward()
    close(scores, golden['prm_train_scores'])
    close(loss, golden['prm_loss'])
    # the release's backward omits the peak mean's 1/count: gradients match only with it
    close(model.classifier.weight.grad, golden['prm_grad_classifier'])
    close(model.backbone.conv1.weight.grad, golden['prm_grad_conv1'])


def _prm_inference(model, golden):
    x1 = golden['prm_inputs'][:1].double()
    with torch.no_grad():
        crm = model.class_maps(x1, factor=2)
        scores, _, peak_list = peak_stimulation(crm, 3, 'median')
    keep = select_inference_peaks(scores[0], peak_values(crm, peak_list), peak_list[:, 1],
                                  -1e9, -1e9, 'prm')
    peaks = peak_list[keep]
    with peak_backprop_mode(model):
        prms = peak_response_maps(lambda t: model.class_maps(t, factor=2), x1, peaks, chunk=4)
    return crm, scores, peaks, prms


def test_prm_peak_backprop(golden):
    model = build('prm', golden).eval()
    crm, scores, peaks, prms = _prm_inference(model, golden)
    close(scores, golden['prm_test_scores'])
    close(crm, golden['prm_test_crm'])
    assert torch.equal(peaks, golden['prm_peaks'])
    close(prms, golden['prm_prms'], tol=1e-5)
    # the convs are restored after the block
    assert 'forward' not in vars(model.backbone.conv1)


def test_prm_retrieval(golden):
    model = build('prm', golden).eval()
    crm, _, peaks, prms = _prm_inference(model, golden)
    size = golden['prm_inputs'].shape[-2:]
    proposals = release_resize(golden['prm_proposals'].float(), tuple(size), 'nearest') > 0
    assert torch.equal(proposals, golden['prm_proposals_resized'])
    up = release_resize(crm[0], tuple(size))
    assert torch.equal(up, golden['prm_class_maps_up'].double())
    labels = peaks[:, 1]
    masks, out_labels, _ = retrieve_instances(prms.double(), labels, up[labels], proposals,
                                              bg_factor=0.95, penalty=1e-5, balance=0.8)
    assert torch.equal(out_labels, golden['prm_inst_labels'])
    assert torch.equal(masks, golden['prm_inst_masks'])


def test_countseg_training_losses(golden):
    model = build('countseg', golden).train()
    x, counts = golden['cs_inputs'].double(), golden['cs_counts']
    crm, density = model.branch_maps(x)
    scores, peak_map, _ = peak_stimulation(crm, 3, 'median')
    close(scores, golden['cs_train_scores'])
    close(density, golden['cs_density'])
    peaks = top_count_peak_mask(crm, peak_map, counts)
    assert torch.equal(peaks, golden['cs_peak_mask'])
    l1 = sum(stage1_loss(scores, density, counts).values())
    close(l1, golden['cs_loss_stage1'])
    absent = sample_absent_classes(counts, 0.2, 1.1)
    l2 = sum(stage2_loss(scores, density, counts, peaks, absent).values())
    close(l2, golden['cs_loss_stage2'])


def test_countseg_inference(golden):
    model = build('countseg', golden).eval()
    x1 = golden['cs_inputs'][:1].double()
    with torch.no_grad():
        crm, density = model.branch_maps(x1)
        scores, _, peak_list = peak_stimulation(crm, 3, 'median')
    close(scores, golden['cs_eval_scores'])
    close(density, golden['cs_eval_density'])
    keep = select_inference_peaks(scores[0], peak_values(crm, peak_list), peak_list[:, 1],
                                  0.5, 20.0, 'countseg')
    peaks = peak_list[keep]
    with peak_backprop_mode(model):
        prms = peak_response_maps(lambda t: model.branch_maps(t)[0], x1, peaks)
    size = tuple(x1.shape[-2:])
    proposals = release_resize(golden['cs_proposals'].float(), size, 'nearest') > 0
    labels = peaks[:, 1]
    up = release_resize(crm[0], size)
    model.test_cfg['density_norm'] = 196  # the release's constant (h*w at 448 px)
    extra = model._retrieval_extra(density[0], labels, proposals)
    masks, out_labels, out_scores = retrieve_instances(prms.double(), labels, up[labels],
                                                       proposals, **extra)
    assert torch.equal(out_labels, golden['cs_inst_labels'])
    assert torch.equal(masks, golden['cs_inst_masks'])
    close(out_scores, golden['cs_inst_scores'])
