"""DeepMask / SharpMask release (facebookresearch/deepmask, Lua Torch7) -> insplug's ``DeepMask``.

The release's models (``pretrained/deepmask/model.t7``, ``pretrained/sharpmask/model.t7``) are
``torch.save({model = ..., config = ...})`` files (``TrainerDeepMask.lua`` /
``TrainerSharpMask.lua``: ``modelsv``). :mod:`insplug.converters.torch7` reads them safely and
flattens the module tree to ``{Lua path: Tensor}`` (``trunk.modules.5.modules.1.weight`` is
Lua's ``trunk.modules[5].modules[1].weight``); ``convert_checkpoint('deepmask', 'model.t7',
...)`` does both. This converter maps those paths:

* ``trunk`` (``DeepMask.lua: createTrunk``): fb.resnet.torch's ResNet
  (``models/resnet.lua``: 1 conv1, 2 BN, 3 ReLU, 4 max-pool, 5-7 layer1-3; each block a
  ``Sequential(ConcatTable(residual, shortcut), CAddTable, ReLU)``; the shortcut a
  ``Sequential(conv 1x1, BN)`` or ``Identity``) with its BNs made fixed affines
  (imagine-nn ``utils.BNtoFixed``: ``inn.ConstAffine`` with ``a = gamma / sqrt(var + eps)``,
  ``b = beta - mean a``) and every 3x3 / 7x7 convolution wrapped as
  ``Sequential(SpatialSymmetricPadding, conv)`` (``modelUtils.updatePadding``); then
  ``SpatialZeroPadding(-1)``, the 1x1 conv 1024 -> 128 (``head.reduce``), ReLU, View and
  ``Linear(128 F F -> 512)`` (``head.embed``, reshaped to an F x F convolution; a file saved
  after ``linear2convTrunk`` holds that convolution already);
* ``maskBranch`` (DeepMask) / ``maskBranchDM`` (SharpMask): ``Linear(512 -> oSz^2)`` ->
  ``head.mask`` (a 1x1 convolution); the upsampling after it has no parameters;
* ``scoreBranch``: ``Linear(512 -> 1024)``, ``Linear(1024 -> 1)`` -> ``head.score_fc1/2``;
* SharpMask (``SharpMask.lua``): ``netvs[0]`` (``Linear(512 -> km F F)``) -> ``refine.v0``;
  ``neths[i]`` (3 convs) -> ``refine.horizontal[i-1].{0,2,4}``; ``netvs[i]`` (2 convs) ->
  ``refine.vertical[i-1].{0,2}``; the last conv of ``refs[#refs]`` -> ``refine.final``.
  ``refs[i]`` holds the same ``neths[i]`` / ``netvs[i]`` objects (``ParallelTable``); those
  duplicate paths are checked equal and dropped.

Tensor transforms: a fixed affine ``(a, b)`` becomes a batch norm with ``weight = a``,
``bias = b``, ``running_mean = 0``, ``running_var = 1 - eps`` (eps = 1e-5, the eps of
insplug's ``FrozenBatchNorm2d`` / ``nn.BatchNorm2d``), so ``weight / sqrt(var + eps) = a``; a
trunk convolution's bias (fb.resnet.torch kept zero biases before cuDNN 4) is folded into the
affine after it (``b + a c``). A plain batch norm (``running_mean/var``, e.g. a trunk that was
not made fixed) is kept (``running_std`` of old files: ``var = std^-2 - eps``, nn's
``BatchNormalization:read``). Linear weights are reshaped to the convolutions insplug runs.

A second converter, ``fb_resnet``, maps fb.resnet.torch's ImageNet ResNet ``.t7`` (the release's
trunk initialisation ``pretrained/resnet-50.t7``) to torchvision's names, for
``trunk_pretrained``.

Sources read: facebookresearch/deepmask 280a716 (``DeepMask.lua``, ``SharpMask.lua``,
``modelUtils.lua``, ``Trainer*.lua``, ``train.lua``), facebook/fb.resnet.torch 985e569
(``models/resnet.lua``), szagoruyko/imagine-nn 6fed930 (``utils.lua``, ``ConstAffine.lua``),
torch/nn 8726825 (``Module.lua``, ``BatchNormalization.lua``).
"""
import re
from collections import OrderedDict

import torch

from insplug.converters import register_converter
from insplug.converters.common import ConversionError

BN_EPS = 1e-5
_MODULE_PATH = re.compile(r'^(.*)\.(weight|bias|running_mean|running_var|running_std|a|b)$')


def _indices(path):
    """'modules.5.modules.1.modules.2' -> (5, 1, 2); raises on another path form."""
    parts = path.split('.') if path else []
    if len(parts) % 2 or any(p != 'modules' for p in parts[::2]) or not all(
            p.isdigit() for p in parts[1::2]):
        raise ConversionError(f'deepmask: unexpected module path {path!r}')
    return tuple(int(p) for p in parts[1::2])


def _group_modules(state_dict):
    """{key: Tensor} -> OrderedDict {module path: {param: Tensor}} (keys' order kept)."""
    modules = OrderedDict()
    for key, value in state_dict.items():
        m = _MODULE_PATH.match(key)
        if not m:
            raise ConversionError(f'deepmask: {key!r} is not a module parameter')
        modules.setdefault(m.group(1), {})[m.group(2)] = value
    return modules


def _kind(params, where):
    if set(params) == {'a', 'b'}:
        return 'affine'
    if 'running_mean' in params:
        return 'bn'
    if 'weight' in params and set(params) <= {'weight', 'bias'}:
        return {4: 'conv', 2: 'linear'}.get(params['weight'].dim(), '?')
    raise ConversionError(f'deepmask: module {where} has parameters {sorted(params)}, not a '
                          'convolution, linear layer or (fixed) batch norm')


def _norm(params, conv_bias, dst):
    """A fixed affine / batch norm (+ the bias of the convolution before it) -> BN keys."""
    if 'a' in params:
        a, b = params['a'].flatten(), params['b'].flatten()
        mean, var = torch.zeros_like(a), torch.full_like(a, 1.0 - BN_EPS)
        weight, bias = a.clone(), b.clone()
        if conv_bias is not None:
            bias = bias + a * conv_bias
    else:
        mean = params['running_mean'].flatten().clone()
        var = (params['running_var'].flatten().clone() if 'running_var' in params
               else params['running_std'].flatten().pow(-2) - BN_EPS)
        weight = params['weight'].flatten().clone() if 'weight' in params else torch.ones_like(
            mean)
        bias = params['bias'].flatten().clone() if 'bias' in params else torch.zeros_like(mean)
        if conv_bias is not None:  # BN(x + c) = BN with mean - c
            mean = mean - conv_bias
    return {f'{dst}.weight': weight, f'{dst}.bias': bias, f'{dst}.running_mean': mean,
            f'{dst}.running_var': var, f'{dst}.num_batches_tracked': torch.tensor(0)}


def _conv_norm_pairs(entries, where):
    """[(path, params)] in forward order -> [(conv params, norm params)] (conv then norm)."""
    convs = [(p, q) for p, q in entries if _kind(q, p) == 'conv']
    norms = [(p, q) for p, q in entries if _kind(q, p) in ('affine', 'bn')]
    if len(convs) != len(norms) or len(convs) + len(norms) != len(entries):
        raise ConversionError(f'deepmask: {where}: expected convolution / norm pairs, got '
                              f'{[p for p, _ in entries]}')
    return list(zip(convs, norms))


def convert_resnet(modules, src='trunk', dst='net.trunk.', num_stages=3):
    """An fb.resnet.torch ResNet (``models/resnet.lua``) under ``src`` -> torchvision-named keys.

    Args:
        modules: OrderedDict {module path: {param: Tensor}} (from :func:`_group_modules`).
        src: the Lua path of the ``nn.Sequential`` (1 conv1, 2 BN, 3 ReLU, 4 max-pool, 5.. the
            stages).
        dst: prefix of the keys (``conv1``, ``bn1``, ``layer<n>.<block>.conv<k>`` /
            ``bn<k>`` / ``downsample.0`` / ``downsample.1``).
        num_stages: stages kept (3 in DeepMask's trunk, 4 in the ImageNet model).

    Returns:
        (dict of keys, [(path, params)] of the modules after the stages, in forward order).
    """
    out = {}
    stem, blocks, after = [], {}, []
    for path, params in modules.items():
        if not path.startswith(f'{src}.'):
            continue
        idx = _indices(path[len(src) + 1:])
        top = idx[0]
        if top in (1, 2):  # conv1 (maybe wrapped with its padding), its BN
            stem.append((idx, path, params))
        elif 5 <= top < 5 + num_stages:  # layer, block, ConcatTable(residual, shortcut)
            if len(idx) < 5 or idx[2] != 1 or idx[3] not in (1, 2):
                raise ConversionError(f'{path}: not a residual block parameter')
            blocks.setdefault((top - 4, idx[1], idx[3]), []).append((idx, path, params))
        elif top >= 5 + num_stages:
            after.append((idx, path, params))
        else:
            raise ConversionError(f'{path}: no parameters expected at ResNet module {top} '
                                  '(ReLU / max-pool)')
    if not stem:
        raise ConversionError(f'no ResNet stem ({src}.modules.1 / .2) in the file')
    stem.sort(key=lambda e: e[0])
    for (conv, norm) in _conv_norm_pairs([(p, q) for _, p, q in stem], 'ResNet stem'):
        out[f'{dst}conv1.weight'] = conv[1]['weight']
        out.update(_norm(norm[1], conv[1].get('bias'), f'{dst}bn1'))
    for (layer, block, branch), entries in sorted(blocks.items()):
        entries.sort(key=lambda e: e[0])
        pairs = _conv_norm_pairs([(p, q) for _, p, q in entries],
                                 f'layer{layer} block {block}')
        base = f'{dst}layer{layer}.{block - 1}'
        if branch == 2 and len(pairs) != 1:
            raise ConversionError(f'{base}: a shortcut has one conv and one norm')
        for n, (conv, norm) in enumerate(pairs, 1):
            c, b = ((f'{base}.conv{n}', f'{base}.bn{n}') if branch == 1
                    else (f'{base}.downsample.0', f'{base}.downsample.1'))
            out[f'{c}.weight'] = conv[1]['weight']
            out.update(_norm(norm[1], conv[1].get('bias'), b))
    after.sort(key=lambda e: e[0])
    return out, [(p, q) for _, p, q in after]


def convert_trunk(modules, src='trunk', dst='net.'):
    """DeepMask's trunk (``DeepMask.lua: createTrunk``) -> ``{dst}trunk.*`` (layer1..3) and the
    trunk extras (1x1 conv, linear) -> ``{dst}head.reduce`` / ``{dst}head.embed``."""
    out, extras = convert_resnet(modules, src, f'{dst}trunk.', num_stages=3)
    if len(extras) != 2 or any(_kind(q, p) not in ('conv', 'linear') for p, q in extras):
        raise ConversionError(f'deepmask: expected the 1x1 convolution and the linear layer '
                              f'after the trunk, got {[p for p, _ in extras]}')
    (_, reduce), (_, embed) = extras
    r_out = reduce['weight'].shape[0]
    out.update(_as_conv(reduce, f'{dst}head.reduce', (-1, 1, 1)))
    e_weight = embed['weight']
    side = round((e_weight[0].numel() / r_out) ** 0.5)
    if side * side * r_out != e_weight[0].numel():
        raise ConversionError(f'deepmask: the embedding layer {tuple(e_weight.shape)} does not '
                              f'take {r_out} x F x F inputs')
    out.update(_as_conv(embed, f'{dst}head.embed', (r_out, side, side)))
    return out


def _linear_modules(modules, src):
    """Parameter modules under ``src`` in forward order -> [(path, params)]."""
    found = [(_indices(p[len(src) + 1:]), p, q) for p, q in modules.items()
             if p.startswith(f'{src}.')]
    return [(p, q) for _, p, q in sorted(found, key=lambda e: e[0])]


def _as_conv(params, dst, shape_in):
    """Linear (out, in) or conv (out, in, k, k) -> ``dst`` conv weight of (out, *shape_in)."""
    if set(params) != {'weight', 'bias'}:
        raise ConversionError(f'deepmask: {dst} needs a weight and a bias, got {sorted(params)}')
    weight = params['weight']
    return {f'{dst}.weight': weight.reshape(weight.shape[0], *shape_in),
            f'{dst}.bias': params['bias'].flatten()}


def convert_refinement(modules, dst='net.'):
    """SharpMask's ``netvs`` / ``neths`` / ``refs`` -> ``{dst}refine.*``."""
    out = {}
    v0 = _linear_modules(modules, 'netvs.0')
    if len(v0) != 1:
        raise ConversionError('deepmask: netvs[0] must hold one linear layer')
    out.update(_as_conv(v0[0][1], f'{dst}refine.v0', v0[0][1]['weight'].shape[1:]))
    count = len({p.split('.')[1] for p in modules if p.startswith('neths.')})
    for i in range(1, count + 1):
        hs = _linear_modules(modules, f'neths.{i}')
        vs = _linear_modules(modules, f'netvs.{i}')
        if len(hs) != 3 or len(vs) != 2:
            raise ConversionError(f'deepmask: neths[{i}] / netvs[{i}] must hold 3 / 2 '
                                  f'convolutions, got {len(hs)} / {len(vs)}')
        for j, (_, q) in zip((0, 2, 4), hs):
            out.update(_as_conv(q, f'{dst}refine.horizontal.{i - 1}.{j}', q['weight'].shape[1:]))
        for j, (_, q) in zip((0, 2), vs):
            out.update(_as_conv(q, f'{dst}refine.vertical.{i - 1}.{j}', q['weight'].shape[1:]))
    extra = {p.split('.')[1] for p in modules if p.startswith('netvs.')} - {
        str(i) for i in range(count + 1)}
    if extra:
        raise ConversionError(f'deepmask: netvs[{sorted(extra)}] without neths')
    finals = [(p, q) for p, q in modules.items() if re.match(r'^refs\.[1-9]\d*\.modules\.\d+$', p)]
    if len(finals) != 1:
        raise ConversionError(f'deepmask: expected one final convolution in refs[#refs], got '
                              f'{[p for p, _ in finals]}')
    out.update(_as_conv(finals[0][1], f'{dst}refine.final', finals[0][1]['weight'].shape[1:]))
    return out


def _check_duplicates(modules):
    """``refs[k]`` paths into ``neths[k]`` / ``netvs[k]`` (k >= 1) and ``refs[0]`` (netvs[0]):
    the same objects in the release; refuse a file where they differ."""
    for path, params in modules.items():
        m = re.match(r'^refs\.(\d+)\.(.*)$', path)
        if not m:
            continue
        k, rest = int(m.group(1)), m.group(2)
        if k == 0:
            twin = f'netvs.0.{rest}'
        else:
            h = re.match(r'^modules\.1\.modules\.([12])\.(.*)$', rest)
            if not h:
                continue  # the final convolution
            twin = f'{"neths" if h.group(1) == "1" else "netvs"}.{k}.{h.group(2)}'
        other = modules.get(twin)
        if other is None or set(other) != set(params) or not all(
                torch.equal(other[n], params[n]) for n in params):
            raise ConversionError(f'deepmask: {path} should be the same module as {twin}')


@register_converter('deepmask', signature=[r'^trunk\.modules\.\d+\.', r'^scoreBranch\.modules\.'],
                    source='DeepMask / SharpMask (facebookresearch/deepmask, Torch7) model.t7')
def convert_deepmask(state_dict):
    """``{Lua path: Tensor}`` of a DeepMask or SharpMask release model -> insplug ``DeepMask``
    keys (``net.*``); SharpMask files (``neths`` / ``netvs`` / ``refs``) also fill
    ``net.refine.*`` (configs with ``net.sharpmask``)."""
    modules = _group_modules(state_dict)
    known = re.compile(r'^(trunk|scoreBranch|maskBranch|maskBranchDM|neths|netvs|refs)\.')
    stray = [p for p in modules if not known.match(p)]
    if stray:
        raise ConversionError(f'deepmask: parameters outside the release\'s modules: {stray}')
    out = convert_trunk(modules)
    embed = out['net.head.embed.weight'].shape[0]
    score = _linear_modules(modules, 'scoreBranch')
    if len(score) != 2:
        raise ConversionError(f'deepmask: scoreBranch must hold 2 linear layers, got '
                              f'{[p for p, _ in score]}')
    out.update(_as_conv(score[0][1], 'net.head.score_fc1', (embed, 1, 1)))
    hidden = score[0][1]['weight'].shape[0]
    out.update(_as_conv(score[1][1], 'net.head.score_fc2', (hidden, 1, 1)))
    sharp = any(p.startswith('neths.') for p in modules)
    branch, other = ('maskBranchDM', 'maskBranch') if sharp else ('maskBranch', 'maskBranchDM')
    mask = _linear_modules(modules, branch)
    if len(mask) != 1 or any(p.startswith(f'{other}.') for p in modules):
        raise ConversionError('deepmask: expected one linear layer in maskBranch (DeepMask) or '
                              'maskBranchDM (SharpMask)')
    out.update(_as_conv(mask[0][1], 'net.head.mask', (embed, 1, 1)))
    if sharp:
        _check_duplicates(modules)
        out.update(convert_refinement(modules))
    elif any(p.startswith(('netvs.', 'refs.')) for p in modules):
        raise ConversionError('deepmask: refinement modules without neths')
    return {k: v.contiguous() for k, v in out.items()}


def to_detectron2(state_dict):
    """insplug mmdet-layout DeepMask state_dict (the output of :func:`convert_deepmask`) -> the
    layout of insplug's detectron2 ``DeepMask`` meta-architecture: the same ``net.*`` keys (both
    adapters hold the core ``DeepMaskNet`` as ``net``); anything else is refused."""
    stray = [k for k in state_dict if not k.startswith('net.')]
    if stray:
        raise ConversionError(f'deepmask (to detectron2): keys outside net.*: {stray[:5]}')
    return dict(state_dict)


@register_converter('fb_resnet', signature=[r'^modules\.1\.weight$',
                                            r'^modules\.5\.modules\.1\.modules\.1\.modules\.1\.'],
                    source='fb.resnet.torch ImageNet ResNet (Torch7) .t7, e.g. the DeepMask '
                           'release\'s resnet-50.t7 -> torchvision-named ResNet')
def convert_fb_resnet(state_dict):
    """fb.resnet.torch's ImageNet ResNet (a bare ``nn.Sequential``: ``models/resnet.lua``; the
    DeepMask release trains from its ``pretrained/resnet-50.t7``) -> torchvision's key names
    (``conv1``, ``bn1``, ``layer1..4``, ``fc``), for ``trunk_pretrained`` of the DeepMask configs
    (the trunk takes conv1 .. layer3). Batch norms keep their statistics (eps 1e-5, nn's
    default); convolution biases, if any, are folded into them."""
    modules = _group_modules({f'model.{k}': v for k, v in state_dict.items()})
    stages = {_indices(p[len('model.'):])[0] for p in modules
              if len(_indices(p[len('model.'):])) >= 5}
    if not stages or sorted(stages) != list(range(5, 5 + len(stages))):
        raise ConversionError(f'fb_resnet: no residual stages at modules 5.. (got {stages})')
    out, after = convert_resnet(modules, 'model', '', num_stages=len(stages))
    if len(after) > 1 or any(_kind(q, p) != 'linear' for p, q in after):
        raise ConversionError(f'fb_resnet: expected at most the fc layer after the stages, got '
                              f'{[p for p, _ in after]}')
    for _, fc in after:
        out.update({'fc.weight': fc['weight'], 'fc.bias': fc['bias'].flatten()})
    return {k: v.contiguous() for k, v in out.items()}
