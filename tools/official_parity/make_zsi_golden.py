"""Golden data of the official ZSI release's semantic classifier
(zhengye1995/Zero-shot-Instance-Segmentation, mmdet 1.x).

Runs on CPU, in float64, with small random inputs and the release's own 48/17 class
embeddings (``data/coco/word_w2v_withbg_48_17.txt``, read from the repository):

* ``ConvFCSemanticBBoxHead.forward`` (``mmdet/models/bbox_heads/convfc_bbox_semantic_head.py``)
  on an object carrying the head's attributes (2 shared fcs of 16, semantic dims 300, a random
  vocabulary of 12 words, ``sync_bg``, ``with_decoder``, ``seen_class=False``): semantic
  logits over background + 48 seen classes, the decoder's reconstruction, and the class vectors
  after the background synchronization;
* ``BBoxSemanticHead.get_det_bboxes`` (``bbox_head_semantic.py``) with ``cfg=None`` on those
  logits: the seen, unseen (ZSI) and GZSI score transfer.

Saves ``tests/fixtures/official/zsi/golden.pt``::

    python tools/official_parity/make_zsi_golden.py --official-repo /path/to/ZSI

Not run in CI; nothing of the official code is copied: the two files are loaded from
``--official-repo``. Run-time shims (written here): stub ``mmdet``, ``mmdet.core``
(identity ``auto_fp16`` / ``force_fp32`` decorators; ``delta2bbox`` returning the RoIs, only
boxes depend on it), ``mmdet.models.builder`` / ``losses`` / ``registry`` (unused names).
"""
import argparse
import importlib.util
import os
import sys
import types
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'zsi', 'golden.pt')


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []
    sys.modules[name] = mod
    return mod


def shim():
    def deco(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f
    _module('mmdet')
    _module('mmdet.core', auto_fp16=deco, force_fp32=deco, bbox_target=None,
            delta2bbox=lambda rois, *a, **k: rois.clone(), multiclass_nms=None)
    _module('mmdet.models')
    _module('mmdet.models.builder', build_loss=None)
    _module('mmdet.models.losses', accuracy=None, LSoftmaxLinear=None)
    _module('mmdet.models.registry',
            HEADS=SimpleNamespace(register_module=lambda cls: cls))
    _module('mmdet.models.utils', ConvModule=None)
    _module('mmdet.models.bbox_heads')


def load(repo, rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(repo, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    repo = os.path.abspath(args.official_repo)
    shim()
    torch.set_default_dtype(torch.float64)
    head_mod = load(repo, 'mmdet/models/bbox_heads/bbox_head_semantic.py',
                    'mmdet.models.bbox_heads.bbox_head_semantic')
    convfc_mod = load(repo, 'mmdet/models/bbox_heads/convfc_bbox_semantic_head.py',
                      'mmdet.models.bbox_heads.convfc_bbox_semantic_head')
    vec_load = torch.from_numpy(np.loadtxt(os.path.join(
        repo, 'data/coco/word_w2v_withbg_48_17.txt'), dtype='float32', delimiter=',')).double()
    num_classes = 49
    g = torch.Generator().manual_seed(0)
    n, c_in, fc, d, v = 5, 32, 16, 300, 12
    voc = torch.randn(d, v, generator=g) * 0.1
    torch.manual_seed(0)
    fake = SimpleNamespace(
        num_shared_convs=0, num_shared_fcs=2, with_avg_pool=False, relu=nn.ReLU(),
        shared_fcs=nn.ModuleList([nn.Linear(c_in, fc), nn.Linear(fc, fc)]),
        semantic_convs=[], semantic_fcs=[], reg_convs=[], reg_fcs=[], with_semantic=True,
        fc_semantic=nn.Linear(fc, d), sync_bg=True, seen_class=False,
        vec=vec_load[:, :num_classes].clone(),
        vec_unseen=torch.cat([vec_load[:, 0:1], vec_load[:, num_classes:]], dim=1).clone(),
        voc=voc, semantic_norm=False, kernel_semantic=nn.Linear(v, d), with_decoder=True,
        d_kernel_semantic=nn.Linear(d, v), d_fc_semantic=nn.Linear(d, fc), with_reg=True,
        reg_with_semantic=False, fc_reg=nn.Linear(fc, 4 * num_classes))
    modules = dict(shared_fcs=fake.shared_fcs, fc_semantic=fake.fc_semantic,
                   kernel_semantic=fake.kernel_semantic, d_kernel_semantic=fake.d_kernel_semantic,
                   d_fc_semantic=fake.d_fc_semantic)
    state = {f'{k}.{p}': t.detach().clone() for k, m in modules.items()
             for p, t in m.state_dict().items()}
    x = torch.randn(n, c_in, generator=g)
    bg_vector = torch.randn(d, generator=g) * 0.05
    with torch.no_grad():
        logits, bbox_pred, x_semantic, d_feature = \
            convfc_mod.ConvFCSemanticBBoxHead.forward(fake, x, bg_vector=bg_vector)
        rois = torch.cat([torch.zeros(n, 1), torch.rand(n, 4, generator=g) * 50], dim=1)
        fake.gzsd, fake.target_means, fake.target_stds = True, [0.] * 4, [.1, .1, .2, .2]
        fake.num_classes = num_classes
        _, (seen_scores, unseen_scores) = head_mod.BBoxSemanticHead.get_det_bboxes(
            fake, rois, logits, bbox_pred, None, 1.0, rescale=False, cfg=None)
        fake.gzsd = False
        _, zsi_only = head_mod.BBoxSemanticHead.get_det_bboxes(
            fake, rois, logits, None, None, 1.0, rescale=False, cfg=None)
    assert torch.equal(fake.vec[:, 0], bg_vector) and torch.equal(fake.vec_unseen[:, 0], bg_vector)
    golden = dict(state_dict=state, x=x, voc=voc, bg_vector=bg_vector,
                  vectors=vec_load.float(), num_seen=num_classes - 1, logits=logits,
                  x_semantic=x_semantic, d_feature=d_feature, seen_scores=seen_scores,
                  unseen_scores=unseen_scores, zsi_scores=zsi_only)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    print('saved', args.out, {k: tuple(t.shape) for k, t in golden.items()
                              if isinstance(t, torch.Tensor)})


if __name__ == '__main__':
    main()
