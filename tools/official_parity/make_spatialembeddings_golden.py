"""Golden data of the official SpatialEmbeddings release (davyneven/SpatialEmbeddings).

Runs the official ``BranchedERFNet`` (src/models), ``SpatialEmbLoss`` (src/criterions/my_loss.py)
and ``Cluster`` (src/utils/utils.py) on CPU in float64 and saves inputs, the official-layout
state_dict and outputs to ``tests/fixtures/official/spatialembeddings/golden.pt``::

    python tools/official_parity/make_spatialembeddings_golden.py \
        --official-repo /path/to/SpatialEmbeddings

Not run in CI. Nothing of the official code is copied here; the script imports it from
``--official-repo`` and only adds run-time shims:

* ``torch.Tensor.cuda`` / ``nn.Module.cuda`` become the identity (the official code calls
  ``.cuda()`` unconditionally);
* a stub ``pandas`` module (imported by src/utils/utils.py for its CSV logger only);
* torch 1.1 compatibility of the Lovasz hinge (src/criterions/lovasz_losses.py): ``Tensor.eq``
  returned uint8 then (``1 - labels`` fails on bool today), so the labels reach it as uint8; its
  Jaccard increments are computed in float32 by ``.float()``, so they are cast to the dtype of
  the errors before ``torch.dot`` (a float64 run is otherwise refused);
* torch 1.1 compatibility of ``Cluster.cluster``: comparisons returned uint8 then, so
  ``instance_mask[mask] = proposal`` wrote a uint8 map into a uint8 map; ``Tensor.__setitem__``
  casts a bool value written into a uint8 tensor to uint8, as then;
* the official coordinate buffer (``linspace(0, 2, 2048)`` x ``linspace(0, 1, 1024)``, built in
  float32) is rebuilt with the same ``linspace`` calls in float64, so that float64 runs are not
  limited by float32 coordinates;
* inputs are drawn in float32 and run in float64 (stored as float32, exactly), and gradients
  are stored as float32, to keep the fixture small;
* small widths: the official ERFNet blocks are built at smaller widths
  (16/64/128 -> 4/8/16) by wrapping the official block classes (their code is unchanged), so
  the fixture stays small. The full-width key layout and shapes are recorded separately for the
  converter's strict-load test.
"""
import argparse
import os
import sys
import tempfile
import types

import torch
from torch import nn

WIDTHS = {16: 4, 64: 8, 128: 16}  # official ERFNet width -> fixture width
OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'spatialembeddings', 'golden.pt')


def install_shims():
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    setitem = torch.Tensor.__setitem__

    def setitem_uint8(self, index, value):
        if (isinstance(value, torch.Tensor) and value.dtype == torch.bool
                and self.dtype == torch.uint8):
            value = value.to(torch.uint8)
        return setitem(self, index, value)
    torch.Tensor.__setitem__ = setitem_uint8
    stub_dir = tempfile.mkdtemp(prefix='se_stubs_')
    with open(os.path.join(stub_dir, 'pandas.py'), 'w') as f:
        f.write('class DataFrame:\n    @staticmethod\n    def from_dict(d):\n'
                '        raise RuntimeError("pandas stub")\n')
    sys.path.insert(0, stub_dir)


def float64_grid():
    xm = torch.linspace(0, 2, 2048, dtype=torch.float64).view(1, 1, -1).expand(1, 1024, 2048)
    ym = torch.linspace(0, 1, 1024, dtype=torch.float64).view(1, -1, 1).expand(1, 1024, 2048)
    return torch.cat((xm, ym), 0)


def small_width_model(erfnet, BranchedERFNet, num_classes):
    """The official BranchedERFNet with the ERFNet widths mapped by WIDTHS."""
    w = lambda c: WIDTHS.get(c, c)  # noqa: E731 (3 = image channels stays)
    orig = (erfnet.DownsamplerBlock, erfnet.non_bottleneck_1d, erfnet.UpsamplerBlock)
    erfnet.DownsamplerBlock = lambda i, o: orig[0](w(i), w(o))
    erfnet.non_bottleneck_1d = lambda c, p, d: orig[1](w(c), p, d)
    erfnet.UpsamplerBlock = lambda i, o: orig[2](w(i), w(o))
    try:
        model = BranchedERFNet(num_classes=num_classes)
    finally:
        erfnet.DownsamplerBlock, erfnet.non_bottleneck_1d, erfnet.UpsamplerBlock = orig
    # the two output convs are built with nn.* and a literal width in the official code
    model.encoder.output_conv = nn.Conv2d(WIDTHS[128], sum(num_classes), 1)
    for dec, n in zip(model.decoders, num_classes):
        dec.output_conv = nn.ConvTranspose2d(WIDTHS[16], n, 2, stride=2)
    return model


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=gen)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=gen)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=gen)


def instance_maps(gen, batch, h, w):
    """(B, H, W) uint8 instance ids: random ellipses, later ones on top; image 1 is empty."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing='ij')
    maps = torch.zeros(batch, h, w, dtype=torch.uint8)
    for b in range(batch):
        if b == 1:
            continue
        for k in range(1, 6):
            cy, cx = torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([h, w])
            ry, rx = 3 + torch.rand(2, generator=gen, dtype=torch.float64) * 8
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            maps[b][inside] = k
    # relabel to consecutive ids (occluded objects may have vanished)
    for b in range(batch):
        ids = [i for i in maps[b].unique().tolist() if i]
        out = torch.zeros_like(maps[b])
        for n, i in enumerate(ids, 1):
            out[maps[b] == i] = n
        maps[b] = out
    return maps


def crafted_prediction(gen, h, w, grid, n_obj, noise):
    """(4, H, W) prediction whose offsets point to object centres, with seeds peaking there."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing='ij')
    coords = grid[:, :h, :w]
    pred = torch.zeros(4, h, w, dtype=torch.float64)
    pred[2] = 0.6 + 0.05 * torch.randn(h, w, generator=gen, dtype=torch.float64)
    pred[3] = -4.0
    best = torch.full((h, w), float('inf'), dtype=torch.float64)
    for _ in range(n_obj):
        cy = float(torch.rand(1, generator=gen)) * (h - 1)
        cx = float(torch.rand(1, generator=gen)) * (w - 1)
        r = 7 + float(torch.rand(1, generator=gen)) * 10
        d = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt() / r
        take = (d < 1) & (d < best)
        best = torch.where(take, d, best)
        centre = torch.stack([coords[0, int(round(cy)), int(round(cx))],
                              coords[1, int(round(cy)), int(round(cx))]])
        off = (centre[:, None, None] - coords).clamp(-0.99, 0.99).atanh()
        pred[:2] = torch.where(take[None], off, pred[:2])
        # bandwidth: a radius of about r pixels at the official spacing (~1e-3 per pixel)
        sig = torch.log(torch.tensor(0.693 / (r * 0.7 * 1e-3) ** 2)) / 10
        pred[2] = torch.where(take, sig + 0.02 * torch.randn(h, w, generator=gen,
                                                            dtype=torch.float64), pred[2])
        pred[3] = torch.where(take, 5.0 * (1 - d) - 1.0, pred[3])
    pred[:2] += noise * torch.randn(2, h, w, generator=gen, dtype=torch.float64)
    pred[3] += 0.3 * torch.randn(h, w, generator=gen, dtype=torch.float64)
    return pred


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    install_shims()
    sys.path.insert(0, os.path.join(os.path.abspath(args.official_repo), 'src'))
    import models.erfnet as erfnet
    from criterions.my_loss import SpatialEmbLoss
    from models.BranchedERFNet import BranchedERFNet
    from utils.utils import Cluster
    import criterions.lovasz_losses as lovasz
    import criterions.my_loss as my_loss
    hinge, grad = lovasz.lovasz_hinge, lovasz.lovasz_grad
    my_loss.lovasz_hinge = lambda logits, labels, **k: hinge(logits, labels.to(torch.uint8), **k)
    lovasz.lovasz_grad = lambda gt_sorted: grad(gt_sorted).double()

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    golden = dict(widths=[WIDTHS[16], WIDTHS[64], WIDTHS[128]],
                  source='davyneven/SpatialEmbeddings@39ea249')

    # full-width key layout of the released checkpoint's model (num_classes [3, 1])
    full = BranchedERFNet(num_classes=[3, 1])
    golden['full_keys'] = list(full.state_dict().keys())
    golden['full_shapes'] = [list(v.shape) for v in full.state_dict().values()]

    # --- network -------------------------------------------------------------------------
    model = small_width_model(erfnet, BranchedERFNet, [3, 1])
    model.init_output(1)
    randomise_bn(model, gen)
    model = model.double().eval()
    images = torch.rand(2, 3, 32, 48, generator=gen).double()
    with torch.no_grad():
        output = model(images)
    # float32-representable values (drawn in float32): stored as float32, exactly
    golden['state_dict'] = {k: v.float() if v.is_floating_point() else v.clone()
                            for k, v in model.state_dict().items()}
    golden['images'] = images
    golden['output'] = output

    # --- loss ------------------------------------------------------------------------------
    grid = float64_grid()
    batch, _, h, w = output.shape
    inst = instance_maps(gen, 3, h, w)
    labels = (inst > 0).to(torch.uint8)
    golden['loss_instances'] = inst
    golden['loss_labels'] = labels
    cases = []
    specs = [('net_output', 1, True), ('random_sigma1', 1, True), ('random_sigma2', 2, True),
             ('random_to_mean', 1, False)]
    for name, n_sigma, to_center in specs:
        if name == 'net_output':
            pred = torch.cat([output, output[:1]])  # 3 images; the 2nd map has no instances
        else:
            pred = torch.randn(3, 3 + n_sigma, h, w, generator=gen)
            pred[:, :2] *= 0.3
            pred[:, 2:2 + n_sigma] = 0.5 + 0.2 * pred[:, 2:2 + n_sigma]
            pred = pred.double()  # float32 values: stored exactly as float32
        crit = SpatialEmbLoss(to_center=to_center, n_sigma=n_sigma, foreground_weight=10)
        crit.xym = grid
        terms = {}
        for key, wts in (('instance', (1, 0, 0)), ('var', (0, 10, 0)), ('seed', (0, 0, 1))):
            terms[key] = crit(pred, inst.long(), labels.long(), w_inst=wts[0], w_var=wts[1],
                              w_seed=wts[2]).detach()
        p = pred.clone().requires_grad_()
        total = crit(p, inst.long(), labels.long(), w_inst=1, w_var=10, w_seed=1)
        total.backward()
        cases.append(dict(name=name, n_sigma=n_sigma, to_center=to_center,
                          prediction=pred if name == 'net_output' else pred.float(),
                          loss_instance=terms['instance'], loss_var=terms['var'],
                          loss_seed=terms['seed'], loss_total=total.detach(),
                          grad=p.grad.float()))
    golden['loss_cases'] = cases

    # --- clustering ------------------------------------------------------------------------
    cluster = Cluster()
    cluster.xym = grid
    ccases = []
    ch, cw = 64, 96
    for i, (n_obj, noise, thr) in enumerate([(6, 0.002, 0.9), (9, 0.006, 0.9), (9, 0.006, 0.5),
                                             (4, 0.0, 0.9), (12, 0.01, 0.5)]):
        pred = crafted_prediction(gen, ch, cw, grid, n_obj, noise).float().double()
        with torch.no_grad():
            instance_map, instances = cluster.cluster(pred, n_sigma=1, threshold=thr)
        masks = (torch.stack([d['mask'] for d in instances]) > 0 if instances else
                 torch.zeros(0, ch, cw, dtype=torch.bool))
        scores = torch.tensor([d['score'] for d in instances], dtype=torch.float64)
        ccases.append(dict(prediction=pred.float(), threshold=thr,
                           instance_map=instance_map.clone(),
                           masks=masks, scores=scores))
        print(f'cluster case {i}: threshold {thr}, {len(instances)} instances')
    # the untrained network's output (too few confident seeds: no instance)
    with torch.no_grad():
        instance_map, instances = cluster.cluster(output[0], n_sigma=1, threshold=0.5)
    ccases.append(dict(prediction=output[0].clone(), threshold=0.5,
                       instance_map=instance_map.clone(),
                       masks=torch.zeros(len(instances), h, w, dtype=torch.bool),
                       scores=torch.zeros(len(instances), dtype=torch.float64)))
    golden['cluster_cases'] = ccases

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    torch.load(args.out, weights_only=True)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e3:.0f} kB)')


if __name__ == '__main__':
    main()
