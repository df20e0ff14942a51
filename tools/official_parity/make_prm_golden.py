"""Golden data of the official PRM (ZhouYanzhao/PRM, pytorch branch) and CountSeg
(GuoleiSun/CountSeg) releases.

Runs on CPU, in float64, the official

* PRM ``PeakResponseMapping`` around ``FC_ResNet`` (a torchvision ResNet-18 layout at widths
  4-32, 3 classes): training forward (peak stimulation, sub-pixel factor 2) on 2 images of
  128 x 128, the multi-label soft-margin loss and the gradients it gives; inference (peak
  back-propagation through ``pr_conv2d``) and ``instance_seg`` retrieval among synthetic
  proposals (112 x 112, resized to 128 x 128 as the release does) with ``param=(0.95, 1e-5, 0.8)``;
* CountSeg's ``PeakResponseMapping(peak_stimulation='addedmodule5')`` (``fc_channels`` 6, 2
  classes): training forward (``peak_stimulation_ori_gt``: top-count peaks), the stage-1 and
  stage-2 losses (``class_reg_loss98_6``, ``class_reg_loss96_7_2``), the counting inference and
  ``instance_seg2`` (density term) with ``param=(0.95, 1e-5, 0.8, 0.2)``.

Saves ``tests/fixtures/official/prm/golden.pt``::

    python tools/official_parity/make_prm_golden.py --official-repo /path/to/PRM@pytorch \
        --countseg-repo /path/to/CountSeg

Not run in CI; nothing of the official code is copied here. Run-time shims (written here): a
``nest`` stub (``register`` = identity), ``pyinn.ncrelu`` stub, ``scipy.misc.imresize``
(removed from SciPy: its documented behaviour -- byte-scaling to uint8 over [min, max], then a
PIL resize), ``torch.Tensor.cuda`` / ``nn.Module.cuda`` as identity, and three expressions of
CountSeg's ``peak_stimulation.py`` (and one for float64) that modern PyTorch rejects, rewritten at load time with the
same meaning: ``peak_map^1`` -> ``~peak_map`` (bool XOR 1 is an int64 tensor now, which would
index instead of mask), ``peak_map-mask1`` -> ``peak_map&~mask1`` (bool subtraction raises),
and the top-count threshold tensor ``max_val`` created in the input's dtype (the release makes it
float32, which is its input dtype; in this float64 run a float32 threshold would round the
count-th peak value and drop it).
"""
import argparse
import importlib.util
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'prm', 'golden.pt')
SIZE = 128
PROPOSAL_SIZE = 112
WIDTHS = (4, 8, 16, 32)


# --------------------------------------------------------------------------- shims
def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def imresize(arr, size, interp='bilinear'):
    """scipy.misc.imresize (SciPy < 1.3): bytescale to uint8 then PIL resize."""
    arr = np.asarray(arr)
    lo, hi = arr.min(), arr.max()
    scale = 255.0 / float((hi - lo) if hi != lo else 1.0)
    byte = ((arr - lo) * scale + 0).clip(0, 255) + 0.5
    img = Image.fromarray(byte.astype(np.uint8))
    mode = {'nearest': Image.NEAREST, 'bicubic': Image.BICUBIC,
            'bilinear': Image.BILINEAR}[interp]
    return np.asarray(img.resize((size[1], size[0]), resample=mode))


def install_shims():
    _module('nest', register=lambda fn=None, **kw: fn if fn is not None else (lambda f: f))
    _module('pyinn')
    _module('pyinn.ncrelu', ncrelu=None)
    import scipy.misc
    scipy.misc.imresize = imresize
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self


def load_package(name, root, patches=None):
    """Import ``root`` (an official ``install`` folder) as package ``name``; ``patches``:
    {relative file: [(old, new), ...]} applied to the source text before execution."""
    patches = patches or {}

    class Finder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if not (fullname == name or fullname.startswith(name + '.')):
                return None
            rel = fullname[len(name):].lstrip('.').replace('.', os.sep)
            base = os.path.join(root, rel)
            if fullname == name and not os.path.exists(os.path.join(base, '__init__.py')):
                return None
            if os.path.isdir(base):
                file, pkg = os.path.join(base, '__init__.py'), [base]
            else:
                file, pkg = base + '.py', None
            loader = PatchingLoader(fullname, file)
            loader.patch = patches.get(os.path.relpath(file, root), [])
            return importlib.util.spec_from_file_location(
                fullname, file, loader=loader, submodule_search_locations=pkg)

    import importlib.machinery

    class PatchingLoader(importlib.machinery.SourceFileLoader):
        def get_data(self, path):
            data = super().get_data(path)
            if path.endswith('.py'):
                text = data.decode()
                for old, new in self.patch:
                    assert old in text, (path, old)
                    text = text.replace(old, new)
                data = text.encode()
            return data

    sys.meta_path.insert(0, Finder)
    if not os.path.exists(os.path.join(root, '__init__.py')):  # a Nest module folder
        pkg = types.ModuleType(name)
        pkg.__path__ = [root]
        sys.modules[name] = pkg
        return pkg
    return importlib.import_module(name)


# --------------------------------------------------------------------------- models
def tiny_resnet(seed):
    """A torchvision ResNet-18 layout (BasicBlock x2 per stage) at widths 4-32."""
    from torchvision.models.resnet import BasicBlock
    torch.manual_seed(seed)
    m = nn.Module()
    m.conv1 = nn.Conv2d(3, WIDTHS[0], 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(WIDTHS[0])
    m.relu = nn.ReLU(inplace=True)
    m.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = WIDTHS[0]
    for i, w in enumerate(WIDTHS):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != w:
            down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride, bias=False),
                                 nn.BatchNorm2d(w))
        setattr(m, f'layer{i + 1}', nn.Sequential(BasicBlock(inplanes, w, stride, down),
                                                  BasicBlock(w, w)))
        inplanes = w
    for mod in m.modules():  # non-trivial BN statistics / affine
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def synthetic_proposals(rng):
    """Rectangles and ellipses at PROPOSAL_SIZE, incl. a tiny and a near-full one."""
    yy, xx = np.mgrid[:PROPOSAL_SIZE, :PROPOSAL_SIZE]
    props = []
    for _ in range(30):
        cy, cx = rng.uniform(8, PROPOSAL_SIZE - 8, 2)
        ry, rx = rng.uniform(5, 50, 2)
        if rng.rand() < 0.5:
            props.append((np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx))
        else:
            props.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    props.append((yy < 1) & (xx < 1))                       # below the size limit
    props.append(np.ones_like(yy, bool))                    # above the size limit
    props.append((yy > 2) & (xx > 2))
    return [p for p in props]


def sd(module):
    """float32 copy of the state (the model is rounded to float32 values before running in
    float64, so the float32 copy is exact)."""
    return {k: v.detach().float() if v.is_floating_point() else v.detach().clone()
            for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- PRM
def run_prm(prm_pkg):
    out = {}
    torch.manual_seed(0)
    backbone = prm_pkg.models.FC_ResNet(tiny_resnet(0), 3)
    model = prm_pkg.modules.PeakResponseMapping(backbone, win_size=3, sub_pixel_locating_factor=2,
                                                filter_type='median').float().double()
    out['prm_state_dict'] = sd(model)
    # float32 draws (stored as such), run in float64
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).double()
    labels = torch.tensor([[1., 0., 1.], [0., 1., 0.]], dtype=torch.float64)
    model.train()
    agg = model(x)
    loss = F.multilabel_soft_margin_loss(agg, labels)
    loss.backward()
    out.update(prm_inputs=x.float(), prm_labels=labels, prm_train_scores=agg.detach(), prm_loss=loss.detach(),
               prm_grad_classifier=model[0].classifier[0].weight.grad.clone(),
               prm_grad_conv1=model[0].features[0].weight.grad.clone())
    # inference with peak back-propagation: every peak kept (thresholds far below)
    model.zero_grad()
    # back to the saved state: the training forward updated the BN running statistics
    model.load_state_dict({k: v.double() if v.is_floating_point() else v
                           for k, v in out['prm_state_dict'].items()})
    model = model.inference()  # sub-pixel factor 2 kept: peaks on the upsampled maps
    x1 = x[:1].clone().requires_grad_()
    agg, crm, peaks, prms = model(x1, class_threshold=-1e9, peak_threshold=-1e9)
    out.update(prm_test_scores=agg, prm_test_crm=crm, prm_peaks=peaks, prm_prms=prms.float())
    rng = np.random.RandomState(2)
    proposals = synthetic_proposals(rng)
    out['prm_proposals'] = torch.from_numpy(np.stack(proposals))
    # the release's inputs to retrieval: proposals resized to the PRM size, class maps resized
    out['prm_proposals_resized'] = torch.from_numpy(np.stack(
        [imresize(p.astype(int), (SIZE, SIZE), interp='nearest').astype(bool) for p in proposals]))
    crm_np = crm.squeeze().cpu().numpy()
    out['prm_class_maps_up'] = torch.from_numpy(np.stack(
        [imresize(c, (SIZE, SIZE), interp='bicubic') for c in crm_np]))  # uint8
    x1 = x[:1].clone().requires_grad_()
    inst = model(x1, class_threshold=-1e9, peak_threshold=-1e9,
                 retrieval_cfg=dict(proposals=proposals, param=(0.95, 1e-5, 0.8)))
    out['prm_inst_labels'] = torch.tensor([int(d['category']) for d in inst])
    out['prm_inst_masks'] = torch.from_numpy(np.stack([d['mask'] for d in inst]))
    return out


# --------------------------------------------------------------------------- CountSeg
def run_countseg(cs_pkg, losses):
    out = {}
    backbone = cs_pkg.models.FC_ResNet(tiny_resnet(3), 6)
    model = cs_pkg.modules.PeakResponseMapping(
        backbone, enable_peak_stimulation=True, peak_stimulation='addedmodule5',
        sub_pixel_locating_factor=1, win_size=3, filter_type='median').double()
    torch.manual_seed(4)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    model.float().double()
    out['cs_state_dict'] = sd(model)
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)).double()
    # counts: in the subitizing range, above it (>= 5), absent; more than the peaks of a map
    counts = torch.tensor([[2., 0.], [6., 1.], [0., 3.]], dtype=torch.float64)
    model.train()
    agg, density, peaks = model(x, counts.clone())
    out.update(cs_inputs=x.float(), cs_counts=counts, cs_train_scores=agg.detach(),
               cs_density=density.detach(), cs_peak_mask=peaks.detach().bool())
    l1 = losses.class_reg_loss98_6(agg, counts.clone(), density, peaks.clone().double())
    l2 = losses.class_reg_loss96_7_2(agg, counts.clone(), density, peaks.clone().double())
    out.update(cs_loss_stage1=l1.detach(), cs_loss_stage2=l2.detach())
    # counting inference (demo-pascal), from the saved state (BN statistics as saved)
    model.load_state_dict({k: v.double() if v.is_floating_point() else v
                           for k, v in out['cs_state_dict'].items()})
    model.eval()
    conf, dens, _ = model(x[:1], 1)
    out.update(cs_eval_scores=conf.detach(), cs_eval_density=dens.detach())
    # instance_seg2 (demo-pascal: peak_threshold 20 -> lowered to the max peak; class 0.5)
    model = model.inference()
    rng = np.random.RandomState(6)
    proposals = synthetic_proposals(rng)
    out['cs_proposals'] = torch.from_numpy(np.stack(proposals))
    x1 = x[:1].clone().requires_grad_()
    inst, _ = model(x1, 1, peak_threshold=20, retrieval_cfg=dict(
        proposals=proposals, proposal_count=100, param=(0.95, 1e-5, 0.8, 0.2)))
    out['cs_inst_labels'] = torch.tensor([int(d['category']) for d in inst])
    out['cs_inst_masks'] = torch.from_numpy(np.stack([d['mask'] for d in inst]))
    out['cs_inst_scores'] = torch.tensor([float(d['score']) for d in inst], dtype=torch.float64)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--official-repo', required=True, help='PRM checkout (pytorch branch)')
    ap.add_argument('--countseg-repo', required=True, help='CountSeg checkout')
    ap.add_argument('--out', default=OUT)
    args = ap.parse_args()
    install_shims()
    prm_pkg = load_package('prm_official', os.path.join(args.official_repo, 'install'))
    import prm_official.models
    import prm_official.modules
    out = run_prm(prm_pkg)
    cs_root = os.path.join(args.countseg_repo, 'PRM-pytorch', 'install')
    cs_pkg = load_package('countseg_official', cs_root, patches={
        os.path.join('functions', 'peak_stimulation.py'): [
            ('crm[peak_map^1]', 'crm[~peak_map]'), ('crm1[peak_map^1]', 'crm1[~peak_map]'),
            ('mask2=peak_map-mask1', 'mask2=peak_map&~mask1'),
            ('max_val=float("Inf")*torch.ones((batch_size,num_channels))',
             'max_val=float("Inf")*torch.ones((batch_size,num_channels),dtype=input.dtype)')]})
    import countseg_official.models
    import countseg_official.modules
    nest_losses = load_package('countseg_nest', os.path.join(args.countseg_repo, 'Nest-pytorch',
                                                             'install'))
    import countseg_nest.losses
    out.update(run_countseg(cs_pkg, countseg_nest.losses))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(out, args.out)
    print({k: tuple(v.shape) if torch.is_tensor(v) else type(v).__name__ for k, v in out.items()
           if not k.endswith('state_dict')})


if __name__ == '__main__':
    main()
