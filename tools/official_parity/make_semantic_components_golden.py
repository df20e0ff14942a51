"""Golden data of the official semantic-segmentation releases insplug's components follow.

Writes ``tests/fixtures/official/semantic_components/golden.pt`` from, each imported from its
own checkout (nothing official is copied here)::

    python tools/official_parity/make_semantic_components_golden.py \\
        --lovasz-repo /path/to/LovaszSoftmax --drn-repo /path/to/drn \\
        --espnet-repo /path/to/ESPNet --upernet-repo /path/to/semantic-segmentation-pytorch \\
        --ocnet-repo /path/to/OCNet.pytorch

* bermanmaxim/LovaszSoftmax ``pytorch/lovasz_losses.py``: ``lovasz_softmax`` (float32, as the
  release casts its foreground masks to float32) on random probabilities with ignore pixels,
  for classes 'present' / 'all' / [1, 3], per_image False / True, plus gradients;
* fyu/drn ``drn.py``: DRN-C-26, DRN-C-58 and DRN-D-22 at tiny widths (``channels``), float64,
  eval mode with random BN statistics, ``out_middle=True, out_map=True``: every level + logits;
* sacmehta/ESPNet ``train/Model.py``: ``ESPNet_Encoder(classes=5, p=2, q=2)``, float64;
* CSAILVision/semantic-segmentation-pytorch ``mit_semseg/models/models.py``: ``UPerNet``
  (fc_dim 16, fpn_inplanes (4, 8, 12, 16), fpn_dim 4; its PPM width 512 is fixed), float64;
  its output (saved as 'upernet/logits') is the release's log-softmax of the class scores;
* openseg-group/OCNet.pytorch ``oc_module/base_oc_block.py``: ``BaseOC_Module(8, 8, 4, 4)``
  with a run-time stub of its CUDA-only ``InPlaceABNSync`` (BatchNorm2d + leaky ReLU 0.01,
  the class's documented default activation), float64.

Weights are stored in float32 (float32-representable values; the modules run in float64).

Not run in CI.
"""
import argparse
import importlib.util
import os
import sys
import types

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'fixtures',
                   'official', 'semantic_components', 'golden.pt')


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
        elif isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.05, 0.4, generator=gen)


def state(model):
    """The state dict in float32 (the model runs in float64 from float32-representable
    weights, so the fixture stays small and the outputs are exact float64 results)."""
    return {k: v.detach().float() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()}


def round_to_float32(model):
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.float().double())


def lovasz_cases(repo):
    L = load_module(os.path.join(repo, 'pytorch', 'lovasz_losses.py'), 'lovasz_losses')
    gen = torch.Generator().manual_seed(0)
    out = {}
    for case in range(3):
        logits = torch.randn(2, 4, 7, 9, generator=gen)
        labels = torch.randint(0, 4, (2, 7, 9), generator=gen)
        labels[0, :2, :3] = 255
        if case == 1:
            labels[labels == 2] = 3  # class 2 absent
        out[f'lovasz/{case}/logits'] = logits
        out[f'lovasz/{case}/labels'] = labels
        for ci, classes in enumerate(['present', 'all', [1, 3]]):
            for per_image in (False, True):
                x = logits.clone().requires_grad_()
                loss = L.lovasz_softmax(torch.softmax(x, 1), labels, classes=classes,
                                        per_image=per_image, ignore=255)
                loss.backward()
                key = f'lovasz/{case}/{ci}/{int(per_image)}'
                out[key + '/loss'] = loss.detach()
                out[key + '/grad'] = x.grad.clone()
    return out


def drn_cases(repo):
    drn = load_module(os.path.join(repo, 'drn.py'), 'drn_official')
    gen = torch.Generator().manual_seed(1)
    out = {}
    specs = {'drn_c_26': (4, 4, 8, 8, 8, 8, 8, 8), 'drn_c_58': (4, 4, 4, 4, 4, 4, 8, 8),
             'drn_d_22': (4, 4, 8, 8, 8, 8, 8, 8)}
    for arch, channels in specs.items():
        torch.manual_seed(0)
        model = getattr(drn, arch)(num_classes=3, channels=channels, out_map=True,
                                   out_middle=True).double().eval()
        randomise_bn(model, gen)
        round_to_float32(model)
        x = torch.randn(1, 3, 27, 34, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            logits, levels = model(x)
        out[f'drn/{arch}/channels'] = list(channels)
        out[f'drn/{arch}/state_dict'] = state(model)
        out[f'drn/{arch}/input'] = x
        out[f'drn/{arch}/levels'] = [t.clone() for t in levels]
        out[f'drn/{arch}/logits'] = logits
    return out


def espnet_cases(repo):
    Model = load_module(os.path.join(repo, 'train', 'Model.py'), 'espnet_official')
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(0)
    model = Model.ESPNet_Encoder(classes=5, p=2, q=2).double().eval()
    randomise_bn(model, gen)
    round_to_float32(model)
    x = torch.randn(1, 3, 37, 45, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    return {'espnet/state_dict': state(model), 'espnet/input': x, 'espnet/logits': y,
            'espnet/p': 2, 'espnet/q': 2}


def upernet_cases(repo):
    sys.path.insert(0, repo)
    from mit_semseg.models.models import UPerNet
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    model = UPerNet(num_class=3, fc_dim=16, fpn_inplanes=(4, 8, 12, 16), fpn_dim=4)
    model = model.double().eval()
    randomise_bn(model, gen)
    round_to_float32(model)
    feats = [torch.randn(1, c, h, w, generator=gen, dtype=torch.float64)
             for c, (h, w) in zip((4, 8, 12, 16), ((17, 21), (9, 11), (5, 6), (3, 3)))]
    with torch.no_grad():
        y = model(feats)
    return {'upernet/state_dict': state(model), 'upernet/inputs': feats, 'upernet/logits': y}


def ocnet_cases(repo):
    class InPlaceABNSync(nn.Sequential):
        """Run-time stub of the release's CUDA-only class: BN + leaky ReLU 0.01 (its default
        activation). The release imports it only under torch 0.4, so it is injected here."""

        def __init__(self, num_features, *args, **kwargs):
            super().__init__(nn.BatchNorm2d(num_features), nn.LeakyReLU(0.01))

    path = os.path.join(repo, 'oc_module', 'base_oc_block.py')
    module = types.ModuleType('base_oc_block')
    module.__file__ = path
    module.InPlaceABNSync = InPlaceABNSync
    exec(compile(open(path).read(), path, 'exec'), module.__dict__)
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(0)
    block = module.BaseOC_Module(8, 8, 4, 4, dropout=0.05, sizes=[1]).double().eval()
    for m in block.modules():  # the release zero-initialises W: make the context visible
        if isinstance(m, nn.Conv2d) and m.out_channels == 8 and m.in_channels == 4:
            m.weight.data.normal_(0, 0.3, generator=gen)
            m.bias.data.normal_(0, 0.1, generator=gen)
    randomise_bn(block, gen)
    round_to_float32(block)
    # flatten the stub's nesting: InPlaceABNSync(Sequential(BN, LeakyReLU)) sits at one index
    sd = {}
    for k, v in state(block).items():
        sd[k.replace('.1.0.', '.1.')] = v
    x = torch.randn(2, 8, 5, 7, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
    return {'ocnet/state_dict': sd, 'ocnet/input': x, 'ocnet/output': y}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--lovasz-repo', required=True)
    parser.add_argument('--drn-repo', required=True)
    parser.add_argument('--espnet-repo', required=True)
    parser.add_argument('--upernet-repo', required=True)
    parser.add_argument('--ocnet-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    golden = {}
    golden.update(lovasz_cases(args.lovasz_repo))
    golden.update(drn_cases(args.drn_repo))
    golden.update(espnet_cases(args.espnet_repo))
    golden.update(upernet_cases(args.upernet_repo))
    golden.update(ocnet_cases(args.ocnet_repo))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(golden, args.out)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)')


if __name__ == '__main__':
    main()
