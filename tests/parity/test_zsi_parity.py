"""ZSI's semantic classifier against the official release (golden data from
``tools/official_parity/make_zsi_golden.py``: ``ConvFCSemanticBBoxHead.forward`` with a
vocabulary, synchronized background and decoder, and ``BBoxSemanticHead.get_det_bboxes``'s
seen / ZSI / GZSI score transfer, on the release's 48/17 class embeddings).

* the shipped ``word_w2v_withbg_48_17.pt`` equals the release's text file (exact);
* ``insplug.core.zsi.scoring`` with the same weights gives the release's logits, decoder
  reconstruction and transferred scores (abs 1e-12, float64).
"""
import os.path as osp

import pytest
import torch
from torch import nn

from insplug.core.zsi.scoring import (semantic_embedding, semantic_logits,
                                      semantic_reconstruction, sync_background, zsi_scores)
from insplug.core.zsi.splits import load_class_vectors, split_vectors

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'zsi', 'golden.pt')


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def _linear(state, name):
    w = state[f'{name}.weight']
    lin = nn.Linear(w.shape[1], w.shape[0]).double()
    lin.load_state_dict({'weight': w, 'bias': state[f'{name}.bias']})
    return lin


def test_shipped_vectors_equal_release(golden):
    assert torch.equal(load_class_vectors('48_17'), golden['vectors'])


def test_semantic_head_scores_match_release(golden):
    sd = golden['state_dict']
    x = golden['x']
    h = torch.relu(_linear(sd, 'shared_fcs.0')(x))
    h = torch.relu(_linear(sd, 'shared_fcs.1')(h))
    assert (h - golden['x_semantic']).abs().max() < 1e-12
    feat = _linear(sd, 'fc_semantic')(h)
    vec, vec_unseen = split_vectors(golden['vectors'].double(), golden['num_seen'])
    vec = sync_background(vec, golden['bg_vector'])
    vec_unseen = sync_background(vec_unseen, golden['bg_vector'])
    kernel = _linear(sd, 'kernel_semantic')
    logits = semantic_logits(feat, vec, kernel, golden['voc'])
    assert (logits - golden['logits']).abs().max() < 1e-12
    emb = semantic_embedding(feat, kernel, golden['voc'])
    rec = semantic_reconstruction(emb, golden['voc'], _linear(sd, 'd_kernel_semantic'),
                                  _linear(sd, 'd_fc_semantic'))
    assert (rec - golden['d_feature']).abs().max() < 1e-12
    seen, unseen = zsi_scores(logits, vec, vec_unseen, 'gzsi')
    assert (seen - golden['seen_scores']).abs().max() < 1e-12
    assert (unseen - golden['unseen_scores']).abs().max() < 1e-12
    assert (zsi_scores(logits, vec, vec_unseen, 'zsi') - golden['zsi_scores']).abs().max() \
        < 1e-12
