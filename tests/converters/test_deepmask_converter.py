"""DeepMask / SharpMask ``.t7`` converter: a synthetic release model (the module tree of
facebookresearch/deepmask ``DeepMask.lua`` / ``SharpMask.lua`` over fb.resnet.torch's ResNet,
after ``BNtoFixed`` and ``updatePadding``), at the demo configs' widths, is written as a ``.t7``,
converted with ``convert_checkpoint('deepmask', ...)``, loaded strictly into insplug's DeepMask,
and run next to an interpreter of the Lua module tree (this file: one function per ``nn`` class,
NumPy's ``'symmetric'`` padding) on the same arrays."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from t7_writer import LuaObject, write_t7

from insplug.converters import ConversionError, convert_checkpoint, convert_state_dict
from insplug.converters.torch7 import torch7_state_dict

CFG = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
               'deepmask')


# ------------------------------------------------------------------ the release's module tree
class _Tree:
    """Builds nn modules with random float32 arrays (fields as the Lua classes hold them)."""

    def __init__(self, seed, release=True):
        """release: DeepMask's trunk (fixed affines, symmetric-padding wrappers); False:
        fb.resnet.torch's ImageNet model as trained (batch norms, zero-padded convolutions)."""
        self.rng = np.random.default_rng(seed)
        self.release = release

    def arr(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def conv(self, nin, nout, k, stride=1, pad=0, bias=True):
        fields = dict(nInputPlane=nin, nOutputPlane=nout, kW=k, kH=k, dW=stride, dH=stride,
                      padW=pad, padH=pad, weight=self.arr(nout, nin, k, k,
                                                          scale=(2.0 / (nin * k * k)) ** 0.5),
                      gradWeight=np.zeros((nout, nin, k, k), np.float32), train=True,
                      _type='torch.CudaTensor', output=self.arr(1))
        if bias:
            fields.update(bias=self.arr(nout, scale=0.1), gradBias=np.zeros(nout, np.float32))
        return LuaObject('cudnn.SpatialConvolution', fields)

    def padded_conv(self, *args, **kwargs):
        """A 3x3 / 7x7 conv after ``modelUtils.updatePadding``: Sequential(SymPad, conv)."""
        conv = self.conv(*args, **kwargs)
        if not self.release:
            return conv
        p = conv.fields['padW']
        conv.fields.update(padW=0, padH=0)
        return seq(sympad(p), conv)

    def affine(self, n):  # inn.ConstAffine from utils.BNtoFixed
        if not self.release:
            return LuaObject('nn.SpatialBatchNormalization', dict(
                weight=self.arr(n, scale=0.3) + 1.0, bias=self.arr(n, scale=0.1),
                running_mean=self.arr(n, scale=0.2), running_var=self.arr(n, scale=0.2) ** 2
                + 0.5, eps=1e-5, affine=True, momentum=0.1))
        return LuaObject('inn.ConstAffine', dict(a=self.arr(n, scale=0.3) + 1.0,
                                                 b=self.arr(n, scale=0.1), inplace=True))

    def linear(self, nin, nout):
        return LuaObject('nn.Linear', dict(weight=self.arr(nout, nin, scale=nin ** -0.5),
                                           bias=self.arr(nout, scale=0.1),
                                           gradWeight=np.zeros((nout, nin), np.float32)))

    def basic_block(self, nin, n, stride, conv_bias):
        s = seq(self.padded_conv(nin, n, 3, stride, 1, bias=conv_bias), self.affine(n), relu(),
                self.padded_conv(n, n, 3, 1, 1, bias=conv_bias), self.affine(n))
        return self._residual(s, nin, n, stride), n

    def bottleneck(self, nin, n, stride, conv_bias):
        s = seq(self.conv(nin, n, 1, bias=conv_bias), self.affine(n), relu(),
                self.padded_conv(n, n, 3, stride, 1, bias=conv_bias), self.affine(n), relu(),
                self.conv(n, 4 * n, 1, bias=conv_bias), self.affine(4 * n))
        return self._residual(s, nin, 4 * n, stride), 4 * n

    def _residual(self, s, nin, nout, stride):
        short = (seq(self.conv(nin, nout, 1, stride, bias=False), self.affine(nout))
                 if nin != nout else LuaObject('nn.Identity', {}))
        return seq(LuaObject('nn.ConcatTable', {'modules': {1: s, 2: short}}),
                   LuaObject('nn.CAddTable', {'inplace': True}), relu())

    def resnet(self, depth, base, num_stages):
        """fb.resnet.torch's ImageNet ResNet up to ``num_stages`` stages; layer1's convolutions
        carry (non-zero) biases, as pre-cuDNN-4 fb.resnet.torch did. Returns (modules, width)."""
        block, counts = {18: (self.basic_block, (2, 2, 2, 2)),
                         50: (self.bottleneck, (3, 4, 6, 3))}[depth]
        mods = [self.padded_conv(3, base, 7, 2, 3, bias=False), self.affine(base), relu(),
                LuaObject('nn.SpatialMaxPooling', dict(kW=3, kH=3, dW=2, dH=2, padW=1, padH=1,
                                                       ceil_mode=False))]
        nin = base
        for i, count in enumerate(counts[:num_stages]):
            blocks = []
            for j in range(count):
                b, nin = block(nin, base * 2 ** i, 2 if (i and not j) else 1, conv_bias=i == 0)
                blocks.append(b)
            mods.append(seq(*blocks))
        return mods, nin

    def imagenet_resnet(self, depth=18, base=8, classes=10):
        """``resnet-50.t7`` as fb.resnet.torch saves it (a bare nn.Sequential)."""
        mods, nin = self.resnet(depth, base, 4)
        mods += [LuaObject('cudnn.SpatialAveragePooling', dict(kW=7, kH=7, dW=1, dH=1)),
                 LuaObject('nn.View', {'size': {1: nin}}), self.linear(nin, classes)]
        return seq(*mods)

    def trunk(self, depth, base, fsz, reduce, embed):
        """fb.resnet.torch ImageNet ResNet (layer4 / pool / fc removed) + DeepMask's extras."""
        mods, nin = self.resnet(depth, base, 3)
        mods += [LuaObject('nn.SpatialZeroPadding', dict(pad_l=-1, pad_r=-1, pad_t=-1,
                                                         pad_b=-1)),
                 self.conv(nin, reduce, 1), relu(),
                 LuaObject('nn.View', {'size': {1: 32, 2: reduce * fsz * fsz}}),
                 self.linear(reduce * fsz * fsz, embed)]
        return seq(*mods)

    def deepmask(self, depth=18, base=16, iSz=64, oSz=16, reduce=32, embed=128, score=128):
        fsz = iSz // 16
        trunk = self.trunk(depth, base, fsz, reduce, embed)
        up = seq(LuaObject('nn.Copy', {}), LuaObject('nn.View', {'size': {1: 32, 2: oSz, 3: oSz}}),
                 LuaObject('nn.SpatialReSamplingEx', {'owidth': 2 * oSz, 'oheight': 2 * oSz,
                                                      'mode': 'bilinear'}))
        mask = seq(seq(self.linear(embed, oSz * oSz)), up)
        score_branch = seq(LuaObject('nn.Dropout', {'p': 0.5}), self.linear(embed, score),
                           LuaObject('nn.Threshold', {'threshold': 0, 'val': 1e-6}),
                           LuaObject('nn.Dropout', {'p': 0.5}), self.linear(score, 1))
        return LuaObject('nn.DeepMask', dict(trunk=trunk, maskBranch=mask,
                                             scoreBranch=score_branch, fSz=fsz))

    def sharpmask(self, km=32, ks=32, hidden=(64, 64, 64, 32), **kw):
        """``SharpMask.lua``: the DeepMask parts + createHorizontal / createVertical / refs;
        ``refs[k]`` holds the same neths[k] / netvs[k] objects (shared references)."""
        dm = self.deepmask(**kw)
        fsz, embed = dm.fields['fSz'], kw.get('embed', 128)
        base, e = kw.get('base', 16), 4 if kw.get('depth', 18) == 50 else 1
        skips = (4 * e * base, 2 * e * base, e * base, base)  # layer3, layer2, layer1, stem
        neths, netvs = {}, {0: seq(self.linear(embed, fsz * fsz * km), LuaObject(
            'nn.View', {'size': {1: 32, 2: km, 3: fsz, 4: fsz}}))}
        for i in range(1, 5):
            nh, crop = ks // 2 ** (i - 1), (0, -2, -4, -8)[i - 1]
            h = ([LuaObject('nn.SpatialZeroPadding', dict(pad_l=crop, pad_r=crop, pad_t=crop,
                                                          pad_b=crop))] if crop else [])
            h += [sympad(1), self.conv(skips[i - 1], hidden[i - 1], 3), relu(), sympad(1),
                  self.conv(hidden[i - 1], nh, 3), relu(), sympad(1), self.conv(nh, nh // 2, 3)]
            neths[i] = seq(*h)
            nv = km // 2 ** (i - 1)
            netvs[i] = seq(sympad(1), self.conv(nv, nv, 3), relu(), sympad(1),
                           self.conv(nv, nv // 2, 3))
        refs = {0: netvs[0]}
        for i in range(1, 5):
            refs[i] = seq(LuaObject('nn.ParallelTable', {'modules': {1: neths[i], 2: netvs[i]}}),
                          LuaObject('nn.CAddTable', {}), relu(),
                          LuaObject('nn.SpatialUpSamplingNearest', {'scale_factor': 2}))
        last = refs[4].fields['modules']
        last[5], last[6] = sympad(1), self.conv(km // 16, 1, 3)
        last[7] = LuaObject('nn.View', {'size': {1: 32, 2: 16 * fsz * 16 * fsz}})
        return LuaObject('nn.SharpMask', dict(
            trunk=dm.fields['trunk'], scoreBranch=dm.fields['scoreBranch'],
            maskBranchDM=dm.fields['maskBranch'], fSz=fsz, km=km, ks=ks, neths=neths,
            netvs=netvs, refs=refs, skpos={1: 8, 2: 6, 3: 5, 4: 3}, inps={}))


def seq(*mods):
    return LuaObject('nn.Sequential', {'modules': {i + 1: m for i, m in enumerate(mods)}})


def sympad(p):
    return LuaObject('nn.SpatialSymmetricPadding', dict(pad_l=p, pad_r=p, pad_t=p, pad_b=p))


def relu():
    return LuaObject('cudnn.ReLU', {'inplace': True})


# ------------------------------------------------------------------ a Lua nn interpreter
def _t(a):
    return torch.from_numpy(np.asarray(a)).double()


def _children(m):
    mods = m.fields['modules']
    return [mods[k] for k in sorted(mods)]


def run(m, x, inference=True):
    """Forward of one Lua module (evaluate mode; ``inference``: Threshold -> ReLU, as
    ``modelUtils.linear2convHead`` does for full-scene inference)."""
    c, f = m.class_name, m.fields
    if c == 'nn.Sequential':
        for child in _children(m):
            x = run(child, x, inference)
        return x
    if c == 'nn.ConcatTable':
        return [run(child, x, inference) for child in _children(m)]
    if c == 'nn.ParallelTable':
        return [run(child, xi, inference) for child, xi in zip(_children(m), x)]
    if c == 'nn.CAddTable':
        return x[0] + x[1]
    if c == 'cudnn.ReLU':
        return x.clamp(min=0)
    if c == 'nn.Threshold':
        return x.clamp(min=0) if inference else torch.where(x > f['threshold'], x, f['val'])
    if c in ('nn.Dropout', 'nn.Identity'):
        return x
    if c == 'nn.SpatialSymmetricPadding':
        p = ((0, 0), (0, 0), (f['pad_t'], f['pad_b']), (f['pad_l'], f['pad_r']))
        return torch.from_numpy(np.pad(x.numpy(), p, mode='symmetric'))
    if c == 'nn.SpatialZeroPadding':
        assert f['pad_l'] < 0  # only crops in this tree
        p = -f['pad_l']
        return x[..., p:-p, p:-p]
    if c == 'cudnn.SpatialConvolution':
        bias = _t(f['bias']) if 'bias' in f else None
        return F.conv2d(x, _t(f['weight']), bias, (f['dH'], f['dW']), (f['padH'], f['padW']))
    if c == 'nn.SpatialBatchNormalization':
        scale = _t(f['weight']) / (_t(f['running_var']) + f['eps']).sqrt()
        shift = _t(f['bias']) - _t(f['running_mean']) * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    if c == 'inn.ConstAffine':
        return x * _t(f['a']).view(1, -1, 1, 1) + _t(f['b']).view(1, -1, 1, 1)
    if c == 'nn.SpatialMaxPooling':
        return F.max_pool2d(x, (f['kH'], f['kW']), (f['dH'], f['dW']), (f['padH'], f['padW']),
                            ceil_mode=f['ceil_mode'])
    if c == 'nn.View':
        size = [f['size'][k] for k in sorted(f['size'])]
        return x.reshape(x.shape[0], *size[1:])
    if c == 'nn.Linear':
        return x @ _t(f['weight']).t() + _t(f['bias'])
    if c == 'nn.SpatialUpSamplingNearest':
        s = f['scale_factor']
        return x.repeat_interleave(s, -2).repeat_interleave(s, -1)
    raise NotImplementedError(c)


def deepmask_reference(model, x):
    """DeepMask: trunk -> maskBranch.modules[1] (O x O logits) and scoreBranch."""
    emb = run(model.fields['trunk'], x)
    mask_key = 'maskBranchDM' if 'maskBranchDM' in model.fields else 'maskBranch'
    mask = run(model.fields[mask_key].fields['modules'][1], emb)
    side = int(round(mask.shape[1] ** 0.5))
    mask = mask.view(-1, side, side)
    return dict(mask=mask, score=run(model.fields['scoreBranch'], emb)[:, 0])


def sharpmask_reference(model, x):
    """``SharpMask:forward``: trunk (outputs at skpos {8, 6, 5, 3} kept), refs[0], then refs[k]
    on {trunk.modules[skpos[k]].output, current}."""
    outputs, h = {}, x
    for k, child in enumerate(_children(model.fields['trunk']), 1):
        h = run(child, h)
        outputs[k] = h
    cur = run(model.fields['refs'][0], h)
    for k in range(1, 5):
        cur = run(model.fields['refs'][k], [outputs[model.fields['skpos'][k]], cur])
    side = int(round(cur.shape[1] ** 0.5))
    return cur.view(-1, side, side)


def _build(name, tmp_path, checkpoint):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(CFG, name))
    with DefaultScope.overwrite_default_scope('insplug'):
        model = MODELS.build(cfg.model)
    converted = convert_checkpoint('deepmask', str(checkpoint), str(tmp_path / 'out.pth'),
                                   config=osp.join(CFG, name))
    model.load_state_dict(converted, strict=True)
    saved = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert saved['meta']['converted_from'] == 'deepmask'
    assert saved['state_dict'].keys() == converted.keys()
    return model.double().eval()


def _windows(seed, n=2, size=96):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


def _assert_close(out, ref, what):
    """Max abs difference within 1e-5 relative to the reference's largest magnitude."""
    assert out.shape == ref.shape, (what, out.shape, ref.shape)
    diff = (out - ref).abs().max().item()
    assert diff < 1e-5 * max(1.0, ref.abs().max().item()), (what, diff)


def _convert_and_run(lua, config, tmp_path, seed):
    """Write ``lua`` as the release does, convert it against ``config``, run 2 windows."""
    path = tmp_path / 'model.t7'
    path.write_bytes(write_t7({'model': lua, 'config': {'iSz': 64, 'oSz': 16}}))
    model = _build(config, tmp_path, path)
    x = _windows(seed)
    with torch.no_grad():
        return model.net.forward_windows(x), x


def test_deepmask_t7_converts_and_runs_as_the_release(tmp_path):
    """The trunk's stem, both blocks of each stage, layer1's (biased) convolutions folded into
    their affines, the shortcut convolutions, the extras and both branches."""
    lua = _Tree(0).deepmask()
    out, x = _convert_and_run(lua, 'deepmask_r18_shapes.py', tmp_path, 1)
    ref = deepmask_reference(lua, x)
    for key in ('mask', 'score'):
        _assert_close(out[key], ref[key], key)
    assert ref['score'].std() > 0


def test_sharpmask_t7_converts_and_runs_as_the_release(tmp_path):
    lua = _Tree(1).sharpmask()
    out, x = _convert_and_run(lua, 'sharpmask_r18_shapes.py', tmp_path, 2)
    ref = sharpmask_reference(lua, x)
    assert ref.shape == (2, 64, 64)
    _assert_close(out['refined'], ref, 'refined')
    dm = deepmask_reference(lua, x)
    for key in ('mask', 'score'):
        _assert_close(out[key], dm[key], key)


def test_r50_bottleneck_release_layout(tmp_path):
    """The release's trunk (ResNet-50 bottlenecks, 1x1 shortcut convs, frozen BN as in the
    paper-setting config) at a small width and window: strict load and the same forward."""
    from insplug.core.deepmask import DeepMaskNet
    lua = _Tree(3).deepmask(depth=50, base=8, iSz=32, oSz=8, reduce=16, embed=32, score=32)
    path = tmp_path / 'model.t7'
    path.write_bytes(write_t7({'model': lua}))
    net = DeepMaskNet(depth=50, base_channels=8, norm='frozen', window_size=32, mask_size=8,
                      label_size=16, reduce_channels=16, embed_channels=32,
                      score_channels=32).double().eval()
    sd = convert_state_dict('deepmask', torch7_state_dict(path))
    net.load_state_dict({k[len('net.'):]: v for k, v in sd.items()}, strict=True)
    x = _windows(4, n=2, size=64)
    with torch.no_grad():
        out = net.forward_windows(x)
    ref = deepmask_reference(lua, x)
    for key in ('mask', 'score'):
        _assert_close(out[key], ref[key], key)


def test_wrong_or_tampered_files_are_refused(tmp_path):
    tree = _Tree(5)
    lua = tree.sharpmask()
    sd = torch7_state_dict_of(lua, tmp_path)
    convert_state_dict('deepmask', sd)  # the untampered file converts
    bad = dict(sd)
    key = 'refs.2.modules.1.modules.1.modules.3.weight'
    bad[key] = bad[key] + 1  # refs[2]'s horizontal net no longer the same module as neths[2]
    with pytest.raises(ConversionError, match='same module'):
        convert_state_dict('deepmask', bad)
    extra = dict(sd, **{'trunk.modules.3.weight': torch.zeros(1)})  # a parameter on a ReLU
    with pytest.raises(ConversionError, match='ReLU'):
        convert_state_dict('deepmask', extra)
    with pytest.raises(ConversionError, match='not a deepmask checkpoint'):
        convert_state_dict('deepmask', {'backbone.conv1.weight': torch.zeros(1)})


def torch7_state_dict_of(lua, tmp_path):
    path = tmp_path / 'm.t7'
    path.write_bytes(write_t7({'model': lua}))
    return torch7_state_dict(path)


def test_fb_resnet_imagenet_t7_as_trunk_init(tmp_path):
    """fb.resnet.torch's ImageNet ResNet (``resnet-50.t7``, the release's trunk init: batch
    norms, zero padding, layer4 and fc) -> torchvision names: conv1 .. layer3 load strictly
    into insplug's DeepMask trunk (zero padding, trainable BN in eval mode) and run as the Lua
    modules 1..7; layer4 / fc keep torchvision's names and shapes."""
    from insplug.core.deepmask.trunk import DeepMaskResNetTrunk
    lua = _Tree(6, release=False).imagenet_resnet(depth=18, base=8)
    path = tmp_path / 'resnet-18.t7'
    path.write_bytes(write_t7(lua))
    sd = convert_checkpoint('fb_resnet', str(path))
    trunk = DeepMaskResNetTrunk(depth=18, base_channels=8, norm='bn', padding='zeros')
    own = trunk.state_dict()
    assert {k for k in sd if k not in own} == {k for k in sd if k.startswith(('layer4.', 'fc.'))}
    assert sd['fc.weight'].shape == (10, 64) and sd['layer4.0.downsample.0.weight'].shape == (
        64, 32, 1, 1)
    trunk.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
    trunk.double().eval()
    x = _windows(7, n=2, size=64)
    h = x
    for child in _children(lua)[:7]:
        h = run(child, h)
    with torch.no_grad():
        _assert_close(trunk(x)[3], h, 'layer3')
    with pytest.raises(ConversionError, match='not a fb_resnet checkpoint'):
        convert_state_dict('fb_resnet', torch7_state_dict_of(_Tree(0).deepmask(), tmp_path))
