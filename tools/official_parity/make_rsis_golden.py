"""Golden data of the official RSIS release (imatge-upc/rsis, PyTorch 0.2, Python 2).

Runs on CPU, in float64 (``torch.set_default_dtype``; the release's GT masks are cast to float32
by ``batch_to_var``, which float64 promotion absorbs), the official

* ``FeatureExtractor`` skip projections (src/modules/model.py) on the features of a tiny stub
  trunk (5 levels, strides 32..2, widths 32/16/8/8/4; the ResNet trunk itself is plain
  torchvision and is covered by the converter rules, not here);
* ``RSIS`` decoder (hidden size 16, kernel 3, 'concat' skips, 4 class outputs) stepped T times
  as ``test.py`` does (masks upsampled to the input size), on 2 images of 64 x 96;
* ``MyDataset.sequence_from_masks`` (src/dataloader/dataset.py: area-sorted GT sequence,
  truncation to ``gt_maxseqlen``, end token) on synthetic instance maps;
* ``runIter`` (src/train.py) in 'val' mode: the decoded steps, the soft-IoU cost matrix with
  the release's masking, ``match`` (Munkres), the soft-IoU, class NLL and balanced stop BCE
  losses and their weighted total, for three cases: no curriculum, curriculum limit 2 (fewer
  steps than objects), and more objects than ``gt_maxseqlen``.

Saves ``tests/fixtures/official/rsis/golden.pt``::

    pip install --target /tmp/rsis_pylib munkres
    python tools/official_parity/make_rsis_golden.py --official-repo /path/to/rsis \
        --extra-path /tmp/rsis_pylib

Not run in CI; nothing of the official code is copied here: its files are loaded from
``--official-repo``. Run-time shims (written here, not official code): stub modules ``h5py``,
``cv2`` and ``dataset_utils`` (imported by the dataset module, unused by
``sequence_from_masks``); Python-2 integer division of ``hidden_size`` (an ``int`` subclass
whose ``/`` floors); ``torchvision.models.resnet34`` and the model module's ``ResNet34`` /
``get_skip_dims`` replaced by the tiny stub trunk; ``torch.masked_select`` accepting the
release's uint8 masks; ``runIter``'s text is read from train.py (a Python-2 file that cannot be
imported: it has print statements) and executed with ``.data[0]`` read as ``.item()``.
"""
import argparse
import os
import sys
import tempfile
import types

import numpy as np
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'rsis', 'golden.pt')
H, W = 64, 96
HIDDEN = 16
NUM_CLASSES = 4            # release convention: index 0 = end of sequence, 3 object classes
SKIP_IN = [32, 16, 8, 8, 4]


class Py2Int(int):
    """``hidden_size`` with Python 2 division (``/`` floors)."""

    def __truediv__(self, other):
        return Py2Int(int(self) // other)


class TinyTrunk(nn.Module):
    """Stub trunk: five levels x5..x1 (strides 32, 16, 8, 4, 2) as the release's ResNets."""

    def __init__(self):
        super().__init__()
        chans = [3, SKIP_IN[4], SKIP_IN[3], SKIP_IN[2], SKIP_IN[1], SKIP_IN[0]]
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(5))

    def forward(self, x):
        outs = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            outs.append(x)
        return tuple(outs[::-1])


def install_shims(repo, extra_path):
    tmp = tempfile.mkdtemp(prefix='rsis_shims_')
    for name, text in (('h5py.py', ''), ('cv2.py', ''),
                       ('dataset_utils.py', 'def scale(*a, **k):\n    raise NotImplementedError\n'
                                            'def flip_crop(*a, **k):\n'
                                            '    raise NotImplementedError\n')):
        with open(os.path.join(tmp, name), 'w') as f:
            f.write(text)
    src = os.path.join(repo, 'src')
    paths = [tmp, src, os.path.join(src, 'modules'), os.path.join(src, 'utils'),
             os.path.join(src, 'dataloader')]
    if extra_path:
        paths.insert(0, extra_path)
    sys.path[:0] = paths
    select = torch.masked_select
    torch.masked_select = lambda x, m: select(x, m.bool())
    import torchvision.models as tvm
    tvm.resnet34 = lambda pretrained=False: TinyTrunk()
    import model as model_mod  # official src/modules/model.py
    model_mod.ResNet34 = TinyTrunk
    model_mod.get_skip_dims = lambda name: list(SKIP_IN)
    return model_mod


def load_run_iter(repo):
    import hungarian  # official src/utils/hungarian.py
    with open(os.path.join(repo, 'src', 'train.py')) as f:
        text = f.read()
    start, end = text.index('def runIter'), text.index('def trainIters')
    code = text[start:end].replace('.data[0]', '.data.item()')
    ns = dict(torch=torch, nn=nn, np=np, Variable=torch.autograd.Variable,
              match=hungarian.match, softIoU=hungarian.softIoU)
    exec(compile(code, os.path.join(repo, 'src', 'train.py') + ':runIter', 'exec'), ns)
    return ns['runIter']


def make_args(maxseqlen, gt_maxseqlen, limit=None):
    return types.SimpleNamespace(
        hidden_size=Py2Int(HIDDEN), num_classes=NUM_CLASSES, kernel_size=3, dropout=0.0,
        dropout_stop=0.0, dropout_cls=0.0, skip_mode='concat', base_model='resnet34',
        use_gpu=False, maxseqlen=maxseqlen, gt_maxseqlen=gt_maxseqlen,
        curriculum_learning=limit is not None, limit_seqlen_to=limit or maxseqlen,
        iou_weight=1.0, class_weight=0.1, stop_weight=0.5, stop_balance_weight=0.5,
        use_class_loss=True, use_stop_loss=True, update_encoder=False)


def random_instances(gen, num):
    """Instance id map (0 = background, ids 1..num) and class map from random rectangles
    painted in order (later ones on top), each keeping a non-empty distinct area."""
    ins = np.zeros((H, W), np.int64)
    seg = np.zeros((H, W), np.int64)
    for i in range(1, num + 1):
        h, w = gen.randint(8, 28), gen.randint(8, 36)
        y, x = gen.randint(0, H - h), gen.randint(0, W - w)
        ins[y:y + h, x:x + w] = i
        seg[y:y + h, x:x + w] = gen.randint(1, NUM_CLASSES)
    # renumber the surviving ids 1..n
    ids = [i for i in np.unique(ins) if i > 0]
    out = np.zeros_like(ins)
    for k, i in enumerate(ids, 1):
        out[ins == i] = k
    return out, seg


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--extra-path', default=None,
                        help='folder with the munkres package (pip install --target DIR munkres)')
    parser.add_argument('--out', default=OUT)
    args_cli = parser.parse_args()
    repo = os.path.abspath(args_cli.official_repo)
    torch.set_default_dtype(torch.float64)
    model_mod = install_shims(repo, args_cli.extra_path)
    import dataset as dataset_mod  # official src/dataloader/dataset.py
    import objectives  # official src/utils/objectives.py
    run_iter = load_run_iter(repo)

    torch.manual_seed(0)
    base_args = make_args(6, 6)
    encoder = model_mod.FeatureExtractor(base_args)
    decoder = model_mod.RSIS(base_args)
    # non-trivial BatchNorm statistics and affine parameters (eval mode)
    for mod in encoder.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    encoder.eval()
    decoder.eval()
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        trunk = encoder.base(x)
        skips = encoder(x)

    out = dict(
        trunk_feats=list(trunk), skips=[s.detach() for s in skips],
        encoder_state_dict={k: v.detach().clone() for k, v in encoder.state_dict().items()
                            if not k.startswith('base.')},
        decoder_state_dict={k: v.detach().clone() for k, v in decoder.state_dict().items()},
        hidden_size=HIDDEN, num_classes=NUM_CLASSES, skip_in=list(SKIP_IN), kernel_size=3,
        iou_weight=1.0, class_weight=0.1, stop_weight=0.5, stop_balance_weight=0.5)

    # forward: T steps as test.py (mask logits upsampled to the input size)
    steps = 5
    masks, probs, stops, hidden = [], [], [], None
    with torch.no_grad():
        for _ in range(steps):
            m, c, s, hidden = decoder(skips, hidden)
            masks.append(nn.UpsamplingBilinear2d(size=(H, W))(m)[:, 0])
            probs.append(c)
            stops.append(s[:, 0])
    out['forward'] = dict(mask_logits=torch.stack(masks, 1), class_probs=torch.stack(probs, 1),
                          stop_logits=torch.stack(stops, 1))

    # losses (runIter, 'val' mode: no parameter update)
    gen = np.random.RandomState(3)
    fake_ds = types.SimpleNamespace(classes=list(range(NUM_CLASSES)))
    cases = {}
    for name, nums, maxseqlen, gt_maxseqlen, limit in (
            ('plain', (3, 1), 6, 6, None),
            ('curriculum', (4, 3), 6, 6, 2),
            ('truncated', (7, 2), 5, 5, None)):
        fake_ds.max_seq_len = gt_maxseqlen
        targets, ins_maps, seg_maps = [], [], []
        for n in nums:
            ins, seg = random_instances(gen, n)
            targets.append(dataset_mod.MyDataset.sequence_from_masks(fake_ds, ins, seg))
            ins_maps.append(torch.from_numpy(ins))
            seg_maps.append(torch.from_numpy(seg))
        targets = torch.from_numpy(np.stack(targets))
        run_args = make_args(maxseqlen, gt_maxseqlen, limit)
        y_mask = targets[:, :, :-3].float()
        y_class = targets[:, :, -3].long()
        sw_mask = targets[:, :, -2]
        sw_class = targets[:, :, -1]
        # the release's criteria (src/utils/objectives.py), as trainIters builds them
        crits = [objectives.softIoULoss(), objectives.MaskedNLLLoss(balance_weight=None),
                 objectives.MaskedBCELoss(balance_weight=run_args.stop_balance_weight)]
        optims = [types.SimpleNamespace(zero_grad=lambda: None)] * 2
        losses, outs, perms = run_iter(run_args, encoder, decoder, x, y_mask, y_class, sw_mask,
                                       sw_class, crits, optims, mode='val')
        cases[name] = dict(
            instance_maps=torch.stack(ins_maps).to(torch.uint8),
            class_maps=torch.stack(seg_maps).to(torch.uint8),
            target_masks=targets[:, :, :-3] > 0.5, target_columns=targets[:, :, -3:].clone(),
            maxseqlen=maxseqlen, gt_maxseqlen=gt_maxseqlen,
            limit=-1 if limit is None else limit,
            loss_total=float(losses[0]), loss_mask=float(losses[1]),
            loss_stop=float(losses[2]), loss_cls=float(losses[3]),
            num_steps=int(outs[0].shape[1]),
            matched_gt_masks=perms[0] > 0.5, matched_gt_classes=perms[1].clone())
        print(name, 'steps', outs[0].shape[1], 'losses', [round(float(v), 6) for v in losses])
    out['cases'] = cases
    os.makedirs(os.path.dirname(args_cli.out), exist_ok=True)
    torch.save(out, args_cli.out)
    print('saved', args_cli.out, os.path.getsize(args_cli.out), 'bytes')


if __name__ == '__main__':
    main()
