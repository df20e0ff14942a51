"""ZSI's background-aware RPN and semantic mask head against the official release (golden data
from ``tools/official_parity/make_zsi_heads_golden.py``, float64, the release's 48/17 class
embeddings):

* ``BackgroundAwareRPNHead``: ``init_weights`` puts the class file's background embedding in the
  background rows; objectness logits, regression and the synchronized background vector;
* ``SemanticFCNMaskHead`` (the release's conv trunk quirk, ``chain_convs=False``): seen logits,
  the upsampled feature, the decoder's reconstruction; GZSI seen / unseen logits after the
  background synchronization.

All within abs 1e-10 (float64).
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from insplug.core.zsi.heads import (SemanticMaskHead, background_last, class_logits,
                                    init_background_rows, rpn_background_vector,
                                    semantic_objectness, unseen_mask_logits)
from insplug.core.zsi.scoring import sync_background
from insplug.core.zsi.splits import load_class_vectors, split_vectors

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'zsi', 'heads.pt')
TOL = 1e-10


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def _dense(mask):
    sd = dict(mask['state_dict'])
    for k, s in mask['sparse'].items():
        w = torch.zeros(s['shape'], dtype=torch.float64).view(-1)
        w[s['index'].long()] = s['value'].double()
        sd[k] = w.view(s['shape'])
    return sd


def _vectors():
    return split_vectors(load_class_vectors('48_17').double(), 48)


def test_rpn_matches_release(golden):
    g = golden['rpn']
    sd = g['state_dict']
    vec, _ = _vectors()
    w = torch.randn_like(sd['vec_fb.weight'])
    init_background_rows(w, vec[:, 0])
    assert torch.equal(w[0::2], sd['vec_fb.weight'][0::2])  # release's init_weights
    assert torch.equal(g['bg_embedding'], vec[:, 0])
    rpn_conv = nn.Conv2d(16, 16, 3, padding=1).double()
    rpn_conv.load_state_dict({'weight': sd['rpn_conv.weight'], 'bias': sd['rpn_conv.bias']})
    conv_t = nn.Conv2d(16, 300, 1).double()
    conv_t.load_state_dict({'weight': sd['rpn_cls_conv_T.weight'],
                            'bias': sd['rpn_cls_conv_T.bias']})
    logits, feat = semantic_objectness(g['x'], rpn_conv, conv_t, sd['vec_fb.weight'])
    assert (logits - g['cls_score']).abs().max() < TOL
    reg = F.conv2d(feat, sd['rpn_reg.weight'], sd['rpn_reg.bias'])
    assert (reg - g['bbox_pred']).abs().max() < TOL
    assert (rpn_background_vector(sd['vec_fb.weight']) - g['bg_vector']).abs().max() < TOL
    # mmdet 3.x layout: (fg, bg) per anchor
    swapped = background_last(logits)
    assert torch.equal(swapped[:, 0::2], logits[:, 1::2])
    assert torch.equal(swapped[:, 1::2], logits[:, 0::2])


def _mask_head(sd):
    head = SemanticMaskHead(16, 16, num_convs=2, semantic_dims=300).double()
    ours = {k: v for k, v in sd.items() if not k.startswith(('conv_vec', 'con_vec'))}
    head.load_state_dict(ours, strict=True)  # the release's key layout, as is
    return head


def test_mask_head_matches_release(golden):
    g = golden['mask']
    sd = _dense(g)
    vec, vec_unseen = _vectors()
    assert torch.equal(sd['conv_vec.weight'][:, :, 0, 0], vec.t())
    head = _mask_head(sd)
    logits, conv4_x, rec = head(g['x'], vec)
    assert (logits - g['logits']).abs().max() < TOL
    assert (conv4_x - g['conv4_x']).abs().max() < TOL
    assert (rec - g['d_x']).abs().max() < TOL
    # the release's trunk applies each conv to the input: chaining them differs
    head.chain_convs = True
    assert (head(g['x'], vec)[1] - g['conv4_x']).abs().max() > 1e-3


def test_mask_head_gzsi_matches_release(golden):
    g = golden['mask']
    head = _mask_head(_dense(g))
    vec, vec_unseen = _vectors()
    vec = sync_background(vec, g['bg_vector'])
    vec_unseen = sync_background(vec_unseen, g['bg_vector'])
    emb, _ = head.encode(g['x'])
    seen = class_logits(emb, vec)
    assert (seen - g['gzsi_seen']).abs().max() < TOL
    assert (unseen_mask_logits(seen, vec, vec_unseen) - g['gzsi_unseen']).abs().max() < TOL


def _converted(golden):
    from insplug.converters import convert_state_dict
    sd = {f'rpn_head.{k}': v for k, v in golden['rpn']['state_dict'].items()}
    sd.update({f'mask_head.{k}': v for k, v in _dense(golden['mask']).items()})
    return convert_state_dict('zsi', sd)


def _strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def test_mmdet_heads_with_converted_release_weights(golden):
    """The converter + the registered mmdet heads reproduce the release's head outputs."""
    import insplug.mmdet  # noqa: F401  (registers)
    from insplug.registry import MODELS
    sd = _converted(golden)
    rpn = MODELS.build(dict(
        type='ZSIBackgroundAwareRPNHead', class_vectors='48_17', in_channels=16,
        feat_channels=16, anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                                ratios=[0.5, 1.0, 2.0], strides=[4]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))).double()
    rpn.load_state_dict(_strip(sd, 'rpn_head.'), strict=True)
    g = golden['rpn']
    cls, reg = rpn.forward_single(g['x'])
    assert (cls - background_last(g['cls_score'])).abs().max() < TOL
    assert (reg - g['bbox_pred']).abs().max() < TOL
    assert (rpn.background_vector() - g['bg_vector']).abs().max() < TOL
    head = MODELS.build(dict(
        type='ZSISemanticMaskHead', class_vectors='48_17', num_classes=48, num_convs=2,
        in_channels=16, conv_out_channels=16)).double()
    head.load_state_dict(_strip(sd, 'roi_head.mask_head.'), strict=True)
    m = golden['mask']
    head.eval()
    assert (head(m['x']) - m['logits'][:, 1:]).abs().max() < TOL  # seen, file's background
    head.bg_vector, head.mode = rpn.background_vector(), 'gzsi'
    expected = torch.cat([m['gzsi_seen'][:, 1:], m['gzsi_unseen'][:, 1:]], dim=1)
    assert (head(m['x']) - expected).abs().max() < TOL
    head.train()
    head(m['x'])
    rec_loss = head._ed
    assert (rec_loss[0] - m['conv4_x']).abs().max() < TOL
    assert (rec_loss[1] - m['d_x']).abs().max() < TOL


def test_mmdet_bbox_head_with_converted_release_weights():
    """``ZSISemanticBBoxHead`` (vocabulary path, synchronized background, decoder) with the
    converted weights of ``golden.pt`` (the release's ``ConvFCSemanticBBoxHead.forward``)."""
    import insplug.mmdet  # noqa: F401  (registers)
    from insplug.converters.zsi import convert_zsi  # (no RPN key: the signature would refuse)
    from insplug.registry import MODELS
    g = torch.load(osp.join(osp.dirname(FIXTURE), 'golden.pt'), weights_only=True)
    sd = convert_zsi({f'bbox_head.{k}': v for k, v in g['state_dict'].items()})
    head = MODELS.build(dict(
        type='ZSISemanticBBoxHead', class_vectors='48_17', num_classes=48, in_channels=32,
        roi_feat_size=1, fc_out_channels=16, vocabulary_size=12, with_decoder=True)).double()
    missing, unexpected = head.load_state_dict(_strip(sd, 'roi_head.bbox_head.'), strict=False)
    assert set(missing) == {'fc_reg.weight', 'fc_reg.bias', 'voc'} and not unexpected
    head.load_vocabulary(g['voc'])
    head.bg_vector = g['bg_vector']
    head.train()
    cls_score, _ = head(g['x'][:, :, None, None])
    assert (cls_score[:, -1] - g['logits'][:, 0]).abs().max() < 1e-10  # background last
    assert (cls_score[:, :-1] - g['logits'][:, 1:]).abs().max() < 1e-10
    assert (head._ed[0] - g['x_semantic']).abs().max() < 1e-10
    assert (head._ed[1] - g['d_feature']).abs().max() < 1e-10
