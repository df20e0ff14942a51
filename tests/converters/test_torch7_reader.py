"""The safe Torch7 reader (insplug.converters.torch7) against files written to the format spec
by an independent writer (t7_writer.py): values, shared references, tensor views, refusals."""
import struct

import numpy as np
import pytest
import torch
from t7_writer import LuaFunction, LuaObject, Storage, TensorView, write_t7

from insplug.converters.torch7 import (Torch7Error, Torch7UnsafeError, TorchObject, lua_list,
                                       module_parameters, read_t7, torch7_state_dict)


def test_nested_table_strings_booleans_numbers():
    data = {'name': 'deepmask', 'unicode': 'ünï', 'flag': True, 'off': False, 'lr': 1e-3,
            'iSz': 160, 1: 'first', 2: 'second', 'nested': {'deeper': {'x': -2.5, 'ok': True}},
            'raw': b'\xff\xfe'}
    out = read_t7(write_t7(data))
    assert out == {'name': 'deepmask', 'unicode': 'ünï', 'flag': True, 'off': False,
                   'lr': 1e-3, 'iSz': 160.0, 1: 'first', 2: 'second',
                   'nested': {'deeper': {'x': -2.5, 'ok': True}}, 'raw': b'\xff\xfe'}
    assert isinstance(out['iSz'], float) and isinstance(out['flag'], bool)
    assert lua_list({k: v for k, v in out.items() if isinstance(k, int)}) == ['first', 'second']
    assert read_t7(write_t7(None)) is None
    assert read_t7(write_t7('top')) == 'top'
    with pytest.raises(Torch7Error, match='array'):
        lua_list({1: 'a', 3: 'c'})


def test_shared_references_and_cycles():
    shared = {'v': 1.0}
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    module = LuaObject('nn.Linear', {'weight': arr, 'bias': np.zeros(2, np.float32)})
    cyclic = {'name': 'me'}
    cyclic['self'] = cyclic
    out = read_t7(write_t7({'a': shared, 'b': shared, 'w1': arr, 'w2': arr, 'm1': module,
                            'm2': module, 'cyc': cyclic}))
    assert out['a'] is out['b'] and out['a'] == {'v': 1.0}
    assert out['w1'] is out['w2'] and torch.equal(out['w1'], torch.from_numpy(arr))
    assert out['m1'] is out['m2'] and isinstance(out['m1'], TorchObject)
    assert out['m1'].class_name == 'nn.Linear' and out['m1'].version == 1
    assert out['m1']['weight'] is out['w1']  # the same Lua tensor object
    assert out['cyc']['self'] is out['cyc']


def test_tensor_views_strides_offsets_and_types():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(40).astype(np.float32)
    storage = Storage(base)
    # non-contiguous (column-major-like) 3 x 4 view from element 5: t[i, j] = base[5 + i + 7 j]
    strided = TensorView(storage, [3, 4], [1, 7], offset=5)
    # a second view of the same storage: 2 x 2 x 2 with a zero stride (expanded)
    expanded = TensorView(storage, [2, 2, 2], [0, 10, 1], offset=2)
    double = rng.standard_normal((2, 3, 4))
    longs = np.array([[1, -2 ** 40], [3, 4]], dtype=np.int64)
    out = read_t7(write_t7({'s': strided, 'e': expanded, 'store': storage, 'd': double,
                            'l': longs, 'u8': np.array([0, 255], np.uint8),
                            'i16': np.array([-3], np.int16), 'h': np.array([0.5], np.float16),
                            'cuda': TensorView(Storage(base[:4], 'torch.CudaStorage'), [4], [1],
                                               class_name='torch.CudaTensor'),
                            'empty': TensorView(None, [], [], class_name='torch.FloatTensor')}))
    want = np.array([[base[5 + i + 7 * j] for j in range(4)] for i in range(3)], np.float32)
    assert out['s'].dtype == torch.float32 and out['s'].shape == (3, 4)
    assert np.array_equal(out['s'].numpy(), want)
    want_e = np.array([[[base[2 + 10 * j + k] for k in range(2)] for j in range(2)]] * 2)
    assert np.array_equal(out['e'].numpy(), want_e)
    assert np.array_equal(out['store'].numpy(), base)
    assert out['d'].dtype == torch.float64 and np.array_equal(out['d'].numpy(), double)
    assert out['l'].dtype == torch.int64 and np.array_equal(out['l'].numpy(), longs)
    assert out['u8'].dtype == torch.uint8 and out['u8'].tolist() == [0, 255]
    assert out['i16'].tolist() == [-3] and out['h'].dtype == torch.float16
    assert out['h'].item() == 0.5
    assert out['cuda'].dtype == torch.float32 and np.array_equal(out['cuda'].numpy(), base[:4])
    assert out['empty'].numel() == 0


def test_long_size_4_and_legacy_class_header():
    arr = np.arange(5, dtype=np.float64)
    obj = LuaObject('nn.Old', {'weight': arr}, version=None)
    out = read_t7(write_t7({'m': obj, 'ids': np.array([7, 8], np.int64)}, long_size=4),
                  long_size=4)
    assert out['m'].class_name == 'nn.Old' and out['m'].version == 0
    assert np.array_equal(out['m']['weight'].numpy(), arr)
    assert out['ids'].dtype == torch.int32 and out['ids'].tolist() == [7, 8]


@pytest.mark.parametrize('tag', [6, 7, 8])
def test_functions_are_refused(tag):
    fn = LuaFunction(tag=tag, upvalues={1: {'name': 'x', 'value': 1.0}})
    data = write_t7({'model': LuaObject('nn.Sequential', {'modules': {1: LuaObject(
        'nn.Module', {'hook': fn})}})})
    with pytest.raises(Torch7UnsafeError, match='function'):
        read_t7(data)


def test_malformed_data_is_refused():
    arr = np.arange(12, dtype=np.float32)
    good = write_t7({'w': arr})
    with pytest.raises(Torch7Error, match='truncated'):
        read_t7(good[:30])  # cut inside the table
    with pytest.raises(Torch7Error, match='storage size'):
        read_t7(good[:-3])  # the storage's elements are cut
    # a view reaching past its storage
    with pytest.raises(Torch7Error, match='reach element'):
        read_t7(write_t7(TensorView(Storage(arr), [4, 4], [4, 1], offset=0)))
    with pytest.raises(Torch7Error, match='negative'):
        read_t7(write_t7(TensorView(Storage(arr), [2], [-1], offset=5)))
    # a storage claiming 2^40 floats: refused before any allocation
    name = b'torch.FloatStorage'
    header = struct.pack('<iii', 4, 1, 3) + b'V 1' + struct.pack('<i', len(name)) + name + \
        struct.pack('<q', 2 ** 40)
    with pytest.raises(Torch7Error, match='storage size'):
        read_t7(header)
    with pytest.raises(Torch7Error, match='type tag'):
        read_t7(struct.pack('<i', 42))
    with pytest.raises(Torch7Error, match='own binary serialisation'):
        read_t7(write_t7(LuaObject('torch.Generator', {})))
    with pytest.raises(Torch7Error, match='storage'):  # a DoubleTensor over a FloatStorage
        read_t7(write_t7(TensorView(Storage(arr), [2], [1], class_name='torch.DoubleTensor')))
    nested = 'leaf'
    for _ in range(300):
        nested = {'x': nested}
    with pytest.raises(Torch7Error, match='nested'):
        read_t7(write_t7(nested))


def test_module_parameters_paths(tmp_path):
    w = np.ones((2, 3), np.float32)
    conv = LuaObject('cudnn.SpatialConvolution', {
        'weight': np.zeros((4, 3, 3, 3), np.float32), 'bias': np.arange(4, dtype=np.float32),
        'gradWeight': np.zeros((4, 3, 3, 3), np.float32), 'output': np.zeros(1, np.float32),
        'kW': 3, 'train': True, '_type': 'torch.CudaTensor'})
    linear = LuaObject('nn.Linear', {'weight': w, 'bias': np.zeros(2, np.float32)})
    seq = LuaObject('nn.Sequential', {'modules': {1: LuaObject('nn.Sequential', {
        'modules': {1: LuaObject('nn.SpatialSymmetricPadding', {'pad_l': 1}), 2: conv}}),
        2: LuaObject('inn.ConstAffine', {'a': np.ones(4, np.float32),
                                         'b': np.zeros(4, np.float32)}),
        10: linear}})
    top = LuaObject('nn.DeepMask', {'trunk': seq, 'again': {1: linear},
                                    'inps': {1: np.ones(3, np.float32)}})
    path = tmp_path / 'model.t7'
    path.write_bytes(write_t7({'model': top, 'config': {'iSz': 160}}))
    params = torch7_state_dict(path)
    assert list(params) == [
        'again.1.bias', 'again.1.weight',  # a plain table holding a module: still reached
        'trunk.modules.1.modules.2.bias', 'trunk.modules.1.modules.2.weight',
        'trunk.modules.2.a', 'trunk.modules.2.b',
        'trunk.modules.10.bias', 'trunk.modules.10.weight']
    assert params['again.1.weight'] is params['trunk.modules.10.weight']
    assert params['trunk.modules.1.modules.2.bias'].tolist() == [0, 1, 2, 3]
    assert module_parameters(read_t7(path.read_bytes())['model']['trunk'], 'x').keys() == {
        'x.modules.1.modules.2.bias', 'x.modules.1.modules.2.weight', 'x.modules.2.a',
        'x.modules.2.b', 'x.modules.10.bias', 'x.modules.10.weight'}
