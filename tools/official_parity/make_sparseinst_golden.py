"""Golden data of the official SparseInst release (hustvl/SparseInst, detectron2).

Runs, on CPU in float64 (the official matcher computes in float32 itself), the official

* ``InstanceContextEncoder`` (sparseinst/encoder.py);
* ``GroupIAMDecoder`` (G-IAM, the released R-50 model), ``BaseIAMDecoder`` and
  ``GroupIAMSoftDecoder`` (sparseinst/decoder.py);
* ``SparseInstMatcher`` and ``SparseInstCriterion`` (sparseinst/loss.py) on several batches;
* ``SparseInst.inference`` (sparseinst/sparseinst.py): scores, labels, rescored scores and masks
  at the original image size;

at small widths (encoder 16 channels, 10 instances, 3 classes, kernel 8) and saves inputs, the
official-layout state_dicts (``encoder.*``, ``decoder.*`` keys as in the released checkpoints)
and outputs to ``tests/fixtures/official/sparseinst/golden.pt``::

    pip install --target /tmp/pydeps fvcore    # the official code imports fvcore
    PYTHONPATH=/tmp/pydeps python tools/official_parity/make_sparseinst_golden.py \
        --official-repo /path/to/SparseInst

Not run in CI. Nothing of the official code is copied: it is imported from ``--official-repo``
(the ``sparseinst`` package is registered without running its ``__init__``, which imports the
dataset mapper, evaluators and backbones). Run-time stubs written here: ``detectron2.utils.registry
.Registry``, ``detectron2.layers.Conv2d`` (an ``nn.Conv2d``), ``detectron2.config.CfgNode`` (yacs),
``detectron2.structures.Instances``/``BitMasks``/``ImageList`` (attribute holders) and
``detectron2.modeling`` names that are imported but unused here. (fvcore's focal loss casts to
float32, and so does the official IoU target: those two terms are float32 in the fixture.)

Batches of the criterion (``M_b`` targets of image b, N = 10 instances):

* ``normal``: M = (3, 2); ``with_empty``: M = (2, 0);
* ``more_targets``: M = (12, 2): more targets than instances in image 0. The official criterion
  then pairs image 1's predictions with the wrong targets (its ``mix_tgt_idx`` offsets assume
  ``min(N, M_b) == M_b``). Recorded as ``official_buggy``; the correct reference
  (``reference_fixed``) combines the official criterion run on each image alone (where the offsets
  are right) with the batch normalisers: a sum/num_instances term as sum_b(l_b * M_b) / M, a mean
  over pairs as sum_b(l_b * T_b) / T;
* ``all_empty``: M = (0, 0). The official matcher returns float index tensors and the criterion
  then fails indexing with them (recorded as the error text); ``reference_fixed`` is the official
  ``loss_labels`` called with int64 empty indices (every prediction a negative, normaliser 1).
"""
import argparse
import importlib
import os
import sys
import types

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'sparseinst', 'golden.pt')

NUM_CLASSES, NUM_MASKS, KERNEL_DIM, CH = 3, 10, 8, 16
IN_CHANNELS = dict(res3=8, res4=16, res5=32)
PAD = (64, 96)            # padded batch input (divisible by 32)
DEC_STD, PROJ_MUL = 0.2, 0.3   # decoder weights ~N(0, 0.2^2), mask projection x 0.3


# ------------------------------------------------------------------ run-time stubs
class Registry:
    def __init__(self, name):
        self._obj = {}

    def register(self, obj=None):
        def deco(o):
            self._obj[o.__name__] = o
            return o
        return deco(obj) if obj is not None else deco

    def get(self, name):
        return self._obj[name]


class Conv2d(nn.Conv2d):
    """detectron2.layers.Conv2d without norm/activation: a plain nn.Conv2d."""

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        assert norm is None and activation is None
        super().__init__(*args, **kwargs)


class Instances:
    def __init__(self, image_size, **kwargs):
        self.image_size = image_size
        for k, v in kwargs.items():
            setattr(self, k, v)


class BitMasks:
    def __init__(self, tensor):
        self.tensor = tensor

    def __len__(self):
        return self.tensor.shape[0]


def _mod(name, path=None, **attrs):
    m = types.ModuleType(name)
    if path is not None:
        m.__path__ = [path]
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m
    return m


def install_stubs(repo):
    from yacs.config import CfgNode
    _mod('detectron2', '')
    _mod('detectron2.utils', '')
    _mod('detectron2.utils.registry', Registry=Registry)
    _mod('detectron2.layers', Conv2d=Conv2d)
    _mod('detectron2.config', CfgNode=CfgNode)
    _mod('detectron2.structures', ImageList=object, Instances=Instances, BitMasks=BitMasks)
    _mod('detectron2.modeling', build_backbone=None, META_ARCH_REGISTRY=Registry('meta'))
    _mod('sparseinst', os.path.join(repo, 'sparseinst'))   # its __init__ is not run
    imp = importlib.import_module
    loss = imp('sparseinst.loss')
    return dict(encoder=imp('sparseinst.encoder'), decoder=imp('sparseinst.decoder'),
                loss=loss, model=imp('sparseinst.sparseinst'),
                config=imp('sparseinst.config'), CfgNode=CfgNode)


def make_cfg(mods, decoder_name):
    CN = mods['CfgNode']
    cfg = CN()
    cfg.MODEL = CN()
    cfg.SOLVER = CN()
    cfg.INPUT = CN()
    mods['config'].add_sparse_inst_config(cfg)
    s = cfg.MODEL.SPARSE_INST
    s.ENCODER.NUM_CHANNELS = CH
    s.ENCODER.IN_FEATURES = ['res3', 'res4', 'res5']
    s.DECODER.NAME = decoder_name
    s.DECODER.NUM_MASKS = NUM_MASKS
    s.DECODER.NUM_CLASSES = NUM_CLASSES
    s.DECODER.KERNEL_DIM = KERNEL_DIM
    s.DECODER.INST.DIM = CH
    s.DECODER.INST.CONVS = 2
    s.DECODER.MASK.DIM = CH
    s.DECODER.MASK.CONVS = 2
    return cfg


def randomise(module, gen, std=0.1):
    """Every parameter ~ N(0, std^2) (non-zero biases; no trivial initial values)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)


def make_targets(gen, counts, sizes, out_hw, logits_for=None):
    """Per image: labels (M_b,) and random blob masks (M_b, h, w) (unpadded image size)."""
    targets = []
    for m, (h, w) in zip(counts, sizes):
        masks = torch.zeros(m, h, w, dtype=torch.float64)
        for j in range(m):
            cy, cx = torch.randint(4, h - 4, (1,), generator=gen), torch.randint(4, w - 4, (1,),
                                                                                 generator=gen)
            ry, rx = torch.randint(3, max(4, h // 3), (1,), generator=gen), \
                torch.randint(3, max(4, w // 3), (1,), generator=gen)
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
            inside = ((yy - cy) / ry.double()) ** 2 + ((xx - cx) / rx.double()) ** 2 <= 1
            masks[j] = inside.double()
        labels = torch.randint(0, NUM_CLASSES, (m,), generator=gen)
        targets.append(dict(labels=labels, masks=BitMasks(masks)))
    return targets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    mods = install_stubs(os.path.abspath(args.official_repo))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dt = torch.float64
    out = dict(config=dict(num_classes=NUM_CLASSES, num_masks=NUM_MASKS, kernel_dim=KERNEL_DIM,
                           channels=CH, in_channels=[IN_CHANNELS[k] for k in
                                                     ('res3', 'res4', 'res5')],
                           inst_convs=2, mask_convs=2, groups=4, pad_shape=list(PAD)))

    # ---- encoder
    cfg = make_cfg(mods, 'GroupIAMDecoder')
    shapes = {k: types.SimpleNamespace(channels=c) for k, c in IN_CHANNELS.items()}
    encoder = mods['encoder'].InstanceContextEncoder(cfg, shapes).to(dt)
    randomise(encoder, gen)
    feats = {f'res{i}': torch.randn(2, IN_CHANNELS[f'res{i}'], PAD[0] // 2 ** i, PAD[1] // 2 ** i,
                                    generator=gen, dtype=dt) for i in (3, 4, 5)}
    with torch.no_grad():
        enc = encoder(feats)
    out.update(encoder_state_dict=encoder.state_dict(),
               encoder_inputs=[feats['res3'], feats['res4'], feats['res5']], encoder_output=enc)

    # ---- decoders: G-IAM (released), base IAM, G-IAM softmax
    for name, key in (('GroupIAMDecoder', 'group'), ('BaseIAMDecoder', 'base'),
                      ('GroupIAMSoftDecoder', 'group_softmax')):
        dcfg = make_cfg(mods, name)
        dec = mods['decoder'].build_sparse_inst_decoder(dcfg).to(dt)
        randomise(dec, gen, DEC_STD)
        with torch.no_grad():   # mask logits of both signs, a few units wide
            dec.mask_branch.projection.weight.mul_(PROJ_MUL)
            dec.mask_branch.projection.bias.zero_()
        with torch.no_grad():
            o = dec(enc)
        out[f'decoder_{key}'] = dict(state_dict=dec.state_dict(), pred_logits=o['pred_logits'],
                                     pred_masks=o['pred_masks'], pred_scores=o['pred_scores'])
        if key == 'group':
            # the criterion and inference inputs: the G-IAM outputs with the mask logits
            # standardised to mean 0, std 3 (random weights give masks of one sign only)
            outputs = dict(o)
            pm = o['pred_masks']
            outputs['pred_masks'] = (pm - pm.mean()) / pm.std() * 3

    # ---- matcher + criterion on several batches (the G-IAM outputs)
    lcfg = make_cfg(mods, 'GroupIAMDecoder')
    criterion = mods['loss'].build_sparse_inst_criterion(lcfg)
    matcher = criterion.matcher
    sizes = [(60, 90), (64, 72)]
    cases = {}
    for case, counts in (('normal', (3, 2)), ('with_empty', (2, 0)),
                         ('more_targets', (NUM_MASKS + 2, 2)), ('all_empty', (0, 0))):
        targets = make_targets(gen, counts, sizes, PAD)
        rec = dict(counts=list(counts),
                   labels=[t['labels'] for t in targets],
                   masks=[t['masks'].tensor.to(torch.uint8) for t in targets])
        if case == 'all_empty':
            try:
                criterion(outputs, targets, PAD)
                rec['official_error'] = ''
            except Exception as e:  # noqa: BLE001 (the release's failure is the data)
                rec['official_error'] = f'{type(e).__name__}: {e}'
            empty = torch.zeros(0, dtype=torch.int64)
            fixed = criterion.loss_labels(outputs, targets, [(empty, empty)] * 2, 1.0)
            rec['reference_fixed'] = dict(loss_ce=fixed['loss_ce'] * criterion.weight_dict[
                'loss_ce'])
            cases[case] = rec
            continue
        with torch.no_grad():
            indices = matcher(outputs, targets, PAD)
            losses = criterion(outputs, targets, PAD)
        rec['indices'] = [(i.clone(), j.clone()) for i, j in indices]
        rec['official'] = {k: v.detach().clone() for k, v in losses.items()}
        if case == 'more_targets':
            rec['official_buggy'] = rec.pop('official')
            per = []
            for b in range(2):
                ob = {k: v[b:b + 1] for k, v in outputs.items()}
                with torch.no_grad():
                    per.append(criterion(ob, [targets[b]], PAD))
            m_b = [float(c) for c in counts]
            t_b = [float(min(NUM_MASKS, c)) for c in counts]
            fixed = {}
            for k in per[0]:
                if k in ('loss_ce', 'loss_dice'):       # sum / num_instances
                    fixed[k] = sum(p[k] * m for p, m in zip(per, m_b)) / sum(m_b)
                else:                                    # mean over matched pairs
                    fixed[k] = sum(p[k] * t for p, t in zip(per, t_b)) / sum(t_b)
            rec['reference_fixed'] = fixed
        cases[case] = rec
    out['criterion_cases'] = cases
    out['criterion_outputs'] = {k: v for k, v in outputs.items()}

    # ---- inference on the G-IAM outputs: two images of different sizes in the padded batch
    image_sizes = [(60, 90), (64, 72)]                 # un-padded input sizes
    ori = [dict(height=75, width=112), dict(height=48, width=54)]
    model = types.SimpleNamespace(cls_threshold=0.005, mask_threshold=0.45, max_detections=100)
    # spread the class logits (standardised, x4, -14) so that some instances fall under the
    # 0.005 score threshold
    inf_out = {k: v.clone() for k, v in outputs.items()}
    pl = inf_out['pred_logits']
    inf_out['pred_logits'] = (pl - pl.mean()) / pl.std() * 4 - 14
    with torch.no_grad():
        results = mods['model'].SparseInst.inference(model, inf_out, ori, PAD, image_sizes)
    out['inference'] = dict(
        outputs=inf_out, image_sizes=[list(s) for s in image_sizes],
        ori_sizes=[[o['height'], o['width']] for o in ori],
        scores=[r.scores for r in results], labels=[r.pred_classes for r in results],
        masks=[getattr(r, 'pred_masks', torch.zeros((0, o['height'], o['width']), dtype=torch.bool))
               for r, o in zip(results, ori)])

    # key layout and shapes of the released R-50 G-IAM encoder/decoder (configs/
    # sparse_inst_r50_giam.yaml: detectron2 defaults of sparseinst/config.py, 80 classes), for the
    # converter's strict-load test
    fcfg = mods['CfgNode']()
    fcfg.MODEL, fcfg.SOLVER, fcfg.INPUT = mods['CfgNode'](), mods['CfgNode'](), mods['CfgNode']()
    mods['config'].add_sparse_inst_config(fcfg)
    fcfg.MODEL.SPARSE_INST.DECODER.NAME = 'GroupIAMDecoder'
    full_shapes = {k: types.SimpleNamespace(channels=c)
                   for k, c in dict(res3=512, res4=1024, res5=2048).items()}
    full = {}
    for prefix, module in (
            ('encoder.', mods['encoder'].InstanceContextEncoder(fcfg, full_shapes)),
            ('decoder.', mods['decoder'].build_sparse_inst_decoder(fcfg))):
        full.update({prefix + k: list(v.shape) for k, v in module.state_dict().items()})
    out['full_size_shapes'] = full

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(out, args.out)
    print('saved', os.path.abspath(args.out), f'{os.path.getsize(args.out) / 1e6:.2f} MB')
    for case, rec in cases.items():
        print(case, {k: v for k, v in rec.items() if k.startswith(('official', 'reference'))})
    print('kept', [len(r.scores) for r in results])


if __name__ == '__main__':
    main()
