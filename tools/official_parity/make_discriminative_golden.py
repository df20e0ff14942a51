"""Golden data of the discriminative loss of the authors' release.

The reference is davyneven/fastSceneUnderstanding (Torch7, by Neven and De Brabandere, the
paper's first two authors): ``lossf/myInstanceLoss.lua``. Torch7 cannot be installed here, so the
official Lua file runs unchanged in a Lua interpreter (the ``lupa`` package) against a small
Torch7 *tensor shim* written below: a Lua tensor type whose operations (``size``, ``view``,
``eq``, ``max``, ``sum``, ``expandAs``, mask indexing, ``torch.mean/sum/sqrt/abs/pow/cmax/gt``,
arithmetic) forward to PyTorch float64 tensors with Torch7's semantics (1-based indices, reduced
dimensions kept, full reductions returning Lua numbers). Nothing of the official code is copied
here; it is loaded from ``--official-repo``::

    pip install --target /tmp/lupa lupa
    PYTHONPATH=/tmp/lupa python tools/official_parity/make_discriminative_golden.py \
        --official-repo /path/to/fastSceneUnderstanding

Output: ``tests/fixtures/official/discriminative/golden.pt`` with, per case, the embeddings
(B, 8, H, W), the instance-id maps (B, 1, H, W; one instance map, as in the release's car-only
training) and the official loss. The official function returns only ``(L_var + L_dist)`` summed
over images / B; cases where one term is zero by construction (one instance per image: no push;
every pixel on its instance mean: no pull) pin each term separately.
"""
import argparse
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'discriminative', 'golden.pt')

# Torch7 tensor shim in Lua: every operation calls a PyTorch helper from PY (below)
TORCH_SHIM = r'''
local PY = ...
local T = {}
local M = {}
local function wrap(py) return setmetatable({py = py}, T) end
local function un(x) if type(x) == 'table' then return x.py end return x end
local function out(r) if PY.is_tensor(r) then return wrap(r) end return r end
T.__index = function(self, k)
  if type(k) == 'number' then return out(PY.index(self.py, k)) end
  if type(k) == 'table' then return wrap(PY.mask(self.py, k.py)) end
  return M[k]
end
T.__sub = function(a, b) return wrap(PY.binop('sub', un(a), un(b))) end
T.__add = function(a, b) return wrap(PY.binop('add', un(a), un(b))) end
T.__mul = function(a, b) return wrap(PY.binop('mul', un(a), un(b))) end
T.__div = function(a, b) return wrap(PY.binop('div', un(a), un(b))) end
T.__unm = function(a) return wrap(PY.binop('mul', un(a), -1)) end
function M.size(self, i) return PY.size(self.py, i) end
function M.view(self, ...) return wrap(PY.view(self.py, ...)) end
function M.max(self) return PY.max(self.py) end
function M.sum(self) return PY.sum(self.py) end
function M.eq(self, v) return wrap(PY.eq(self.py, v)) end
function M.expandAs(self, o) return wrap(PY.expand_as(self.py, o.py)) end
torch = {}
function torch.mean(x, d) return out(PY.mean(x.py, d)) end
function torch.sum(x, d) return out(PY.tsum(x.py, d)) end
function torch.sqrt(x) return wrap(PY.unary('sqrt', x.py)) end
function torch.abs(x) return wrap(PY.unary('abs', x.py)) end
function torch.pow(x, e) return wrap(PY.binop('pow', x.py, e)) end
function torch.cmax(x, v) return wrap(PY.cmax(x.py, v)) end
function torch.gt(x, v) return wrap(PY.gt(x.py, v)) end
torch.wrap = wrap
package.loaded['tools/tools'] = {}
'''


class TorchShim:
    """PyTorch helpers with Torch7 semantics, called from the Lua shim."""

    @staticmethod
    def is_tensor(x):
        return isinstance(x, torch.Tensor)

    @staticmethod
    def index(t, k):
        r = t[int(k) - 1]
        return r.item() if r.dim() == 0 else r

    @staticmethod
    def mask(t, m):
        return t[m.bool()]  # Torch7 maskedSelect: row-major, 1-d

    @staticmethod
    def binop(op, a, b):
        fa = a if isinstance(a, torch.Tensor) else torch.tensor(float(a), dtype=torch.float64)
        fb = b if isinstance(b, torch.Tensor) else torch.tensor(float(b), dtype=torch.float64)
        return dict(sub=torch.sub, add=torch.add, mul=torch.mul, div=torch.div,
                    pow=torch.pow)[op](fa.double(), fb.double())

    @staticmethod
    def unary(op, t):
        return getattr(torch, op)(t)

    @staticmethod
    def size(t, i=None):
        return int(t.shape[int(i) - 1]) if i is not None else list(t.shape)

    @staticmethod
    def view(t, *shape):
        return t.reshape(*[int(s) for s in shape])

    @staticmethod
    def max(t):
        return t.max().item()

    @staticmethod
    def sum(t):
        return t.double().sum().item()

    @staticmethod
    def tsum(t, d=None):
        return t.double().sum().item() if d is None else t.sum(int(d) - 1, keepdim=True)

    @staticmethod
    def mean(t, d=None):
        return t.double().mean().item() if d is None else t.mean(int(d) - 1, keepdim=True)

    @staticmethod
    def eq(t, v):
        return (t == float(v)).to(torch.uint8)

    @staticmethod
    def gt(t, v):
        return (t > float(v)).to(torch.uint8)

    @staticmethod
    def cmax(t, v):
        return t.clamp(min=float(v))

    @staticmethod
    def expand_as(t, o):
        return t.expand_as(o)


def instance_maps(gen, batch, h, w, num):
    """(B, 1, H, W) float instance ids from random rectangles (later on top); image 1 empty."""
    maps = torch.zeros(batch, 1, h, w, dtype=torch.float64)
    for b in range(batch):
        if b == 1:
            continue
        for k in range(1, num + 1):
            y0, x0 = int(torch.randint(0, h - 2, (1,), generator=gen)), int(
                torch.randint(0, w - 2, (1,), generator=gen))
            hh, ww = int(torch.randint(1, 6, (1,), generator=gen)), int(
                torch.randint(1, 7, (1,), generator=gen))
            maps[b, 0, y0:y0 + hh, x0:x0 + ww] = k
    return maps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    from lupa import LuaRuntime
    lua = LuaRuntime(unpack_returned_tuples=True)
    repo = os.path.abspath(args.official_repo)
    lua.execute(f"package.path = '{repo}/?.lua;' .. package.path")
    helpers = {k: getattr(TorchShim, k) for k in dir(TorchShim) if not k.startswith('_')}
    lua.execute(TORCH_SHIM, lua.table_from(helpers))
    lossf = lua.eval("(require('lossf/myInstanceLoss'))")  # first value of require
    wrap = lua.eval('torch.wrap')

    gen = torch.Generator().manual_seed(0)
    batch, dims, h, w = 3, 8, 12, 16
    cases = []
    for name in ('random', 'random_dense', 'one_instance', 'tight', 'random_large_margin'):
        num = dict(one_instance=1, random_dense=8).get(name, 5)
        labels = instance_maps(gen, batch, h, w, num)
        emb = torch.randn(batch, dims, h, w, generator=gen).double()
        if name == 'random_large_margin':
            emb = emb * 3
        if name == 'tight':  # every pixel on a per-instance value: no pull, only push
            for b in range(batch):
                for i in labels[b].unique().tolist():
                    if i:
                        m = labels[b, 0] == i
                        emb[b][:, m] = 0.6 * torch.randn(dims, 1, generator=gen).double()
        loss = lossf(wrap(emb.clone()), wrap(labels.clone()))
        cases.append(dict(name=name, embeddings=emb, labels=labels.to(torch.uint8),
                          loss=float(loss)))
        print(f'{name}: official loss {float(loss):.6f}')
    golden = dict(source='davyneven/fastSceneUnderstanding@6a69774 lossf/myInstanceLoss.lua',
                  delta_v=0.5, delta_d=1.5, cases=cases)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    torch.load(args.out, weights_only=True)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e3:.0f} kB)')


if __name__ == '__main__':
    main()
