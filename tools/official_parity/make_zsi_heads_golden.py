"""Golden data of the official ZSI release's background-aware RPN head and semantic mask head
(zhengye1995/Zero-shot-Instance-Segmentation, mmdet 1.x), on CPU in float64:

* ``BackgroundAwareRPNHead.forward_single`` (``mmdet/models/anchor_heads/barpn_head.py``,
  built with ``init_weights`` from the release's 48/17 class file; ``sync_bg``): objectness
  logits (bg, fg per anchor), regression, the synchronized background vector;
* ``SemanticFCNMaskHead.forward`` (``mmdet/models/mask_heads/semantic_fcn_mask_head.py``;
  2 convs of 16, deconv, learnable kernel, decoder), with ``seen_class=True`` (logits, conv4_x,
  decoder output) and with ``seen_class=False, gzsd=True, sync_bg=True`` (seen and unseen
  logits after the background synchronization).

The 300 x 300 x 3 x 3 kernels are sparse (2 % non-zero) so the fixture stays
small: they are saved as ``sparse`` (flat int32 indices, values, shape) and the rest of the
state_dict dense, all in the release's key layout. Saves
``tests/fixtures/official/zsi/heads.pt``::

    python tools/official_parity/make_zsi_heads_golden.py --official-repo /path/to/ZSI

Not run in CI; nothing of the official code is copied: the two files are loaded from
``--official-repo``. Run-time shims (written here, on top of ``make_zsi_golden.shim``):
``mmcv.cnn.normal_init``, ``mmdet.core`` names used at import, ``mmdet.ops.nms``, mmdet's
``ConvModule`` (conv + ReLU), ``Tensor.cuda`` as identity.
"""
import argparse
import os
import sys
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_zsi_golden import _module, load, shim  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'zsi', 'heads.pt')


class _ConvModule(nn.Module):
    """mmdet 1.x ConvModule without norm: conv (bias) + ReLU (stub)."""

    def __init__(self, cin, cout, k, padding=0, conv_cfg=None, norm_cfg=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding)

    def forward(self, x):
        return torch.relu(self.conv(x))


def more_shims():
    shim()

    def normal_init(m, mean=0, std=1, bias=0):
        nn.init.normal_(m.weight, mean, std)
        if getattr(m, 'bias', None) is not None:
            nn.init.constant_(m.bias, bias)
    sys.modules['mmdet.models.builder'].build_loss = lambda cfg: None
    _module('mmcv', imresize=None)
    _module('mmcv.cnn', normal_init=normal_init)
    core = sys.modules['mmdet.core']
    core.__dict__.update(AnchorGenerator=lambda *a, **k: None, anchor_target=None,
                         multi_apply=None, mask_target=None)
    _module('mmdet.ops', nms=None)
    sys.modules['mmdet.models.utils'].ConvModule = _ConvModule
    _module('mmdet.models.anchor_heads')
    _module('mmdet.models.mask_heads')
    torch.Tensor.cuda = lambda self, *a, **k: self


def sparse_(param, g, density=0.02):
    with torch.no_grad():
        param.zero_()
        flat = param.view(-1)
        k = int(flat.numel() * density)
        idx = torch.randperm(flat.numel(), generator=g)[:k]
        flat[idx] = torch.randn(k, generator=g) * 0.05


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    repo = os.path.abspath(args.official_repo)
    more_shims()
    torch.set_default_dtype(torch.float64)
    load(repo, 'mmdet/models/anchor_heads/ba_anchor_head.py',
         'mmdet.models.anchor_heads.ba_anchor_head')
    barpn = load(repo, 'mmdet/models/anchor_heads/barpn_head.py',
                 'mmdet.models.anchor_heads.barpn_head')
    mask_mod = load(repo, 'mmdet/models/mask_heads/semantic_fcn_mask_head.py',
                    'mmdet.models.mask_heads.semantic_fcn_mask_head')
    vec_path = os.path.join(repo, 'data/coco/word_w2v_withbg_48_17.txt')
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    out = {}

    # background-aware RPN
    rpn = barpn.BackgroundAwareRPNHead(
        16, feat_channels=16, semantic_dims=300, anchor_scales=[8],
        anchor_ratios=[0.5, 1.0, 2.0], vec_path=vec_path, sync_bg=True,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False)).double()
    rpn.vec_bg_weight = rpn.vec_bg_weight.double()
    rpn.init_weights()
    with torch.no_grad():  # larger than normal_init(std=0.01) so the outputs are not ~0
        for m in (rpn.rpn_conv, rpn.rpn_cls_conv_T, rpn.rpn_reg):
            m.weight.normal_(0, 0.1, generator=g)
            m.bias.normal_(0, 0.1, generator=g)
    x = torch.randn(2, 16, 6, 5, generator=g)
    with torch.no_grad():
        cls, reg, bg = rpn.forward_single(x)
    out['rpn'] = dict(state_dict={k: v.clone() for k, v in rpn.state_dict().items()}, x=x,
                      cls_score=cls, bbox_pred=reg, bg_vector=bg.flatten().clone(),
                      bg_embedding=rpn.vec_bg_weight.flatten().clone())

    # semantic mask head
    def mask_head(**kw):
        return mask_mod.SemanticFCNMaskHead(
            num_convs=2, in_channels=16, conv_out_channels=16, num_classes=49,
            semantic_dims=300, vec_path=vec_path, with_learnable_kernel=True,
            with_decoder=True, **kw).double()
    seen_head = mask_head(seen_class=True)
    for name, p in seen_head.named_parameters():
        if name.startswith(('kernel_semantic.weight', 'd_kernel_semantic.weight')):
            sparse_(p, g)
        elif not name.startswith('conv_vec'):
            with torch.no_grad():
                p.normal_(0, 0.2, generator=g)
    state = {k: v.clone() for k, v in seen_head.state_dict().items()}
    feats = torch.randn(2, 16, 7, 7, generator=g)
    with torch.no_grad():
        logits, conv4_x, d_x = seen_head(feats)
    gz_head = mask_head(seen_class=False, gzsd=True, sync_bg=True)
    # on the GPU the release's conv_vec and con_vec_t weights are both views of ``self.vec``
    # (made in __init__ after ``.cuda()``), so the in-place background sync reaches both;
    # ``.double()`` on CPU breaks that sharing: restore it
    gz_head.con_vec_t.weight.data = gz_head.conv_vec.weight.data[:, :, 0, 0].t()[..., None, None]
    gz_head.load_state_dict(state, strict=False)  # conv_vec_unseen keeps the file's vectors
    with torch.no_grad():
        gz_seen, gz_unseen = gz_head(feats, [bg.clone()])
    sparse = {}
    for k in ('kernel_semantic.weight', 'd_kernel_semantic.weight'):
        w = state.pop(k).reshape(-1)
        idx = w.nonzero().flatten()
        sparse[k] = dict(index=idx.int(), value=w[idx].clone(),
                         shape=list(seen_head.state_dict()[k].shape))
    out['mask'] = dict(state_dict=state, sparse=sparse, x=feats, logits=logits,
                       conv4_x=conv4_x, d_x=d_x, bg_vector=bg.flatten().clone(),
                       gzsi_seen=gz_seen, gzsi_unseen=gz_unseen)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(out, args.out)
    print('saved', args.out, os.path.getsize(args.out), 'bytes')


if __name__ == '__main__':
    main()
