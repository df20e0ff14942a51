"""A safe reader of Lua Torch7's binary serialisation (``torch.save`` / ``.t7`` files).

Lua Torch wrote models with ``torch.save(file, object)`` (``binary`` mode by default). The format
is defined by torch/torch7 ``File.lua`` (``File:writeObject`` / ``File:readObject``; commit
814ea4a), ``generic/Tensor.c`` (``torch_Tensor_(write/read)``), ``generic/Storage.c``
(``torch_Storage_(write/read)``), ``lib/TH/THDiskFile.c`` (``longSize``) and, for CUDA types,
torch/cutorch ``generic/CStorage.c`` (commit 5e9d86c: the device data is copied to the host and
written as the same element type). Every object starts
with a 4-byte type tag:

=====  ===========================================================================
tag    payload (``int`` = 4-byte little-endian int32, ``long`` = 8 bytes, ``double`` = 8)
=====  ===========================================================================
0      nil: nothing
1      number: double
2      string: int length, bytes
3      table: int reference index; if new: int n, then n (key object, value object)
4      torch object: int reference index; if new: int length + "V <version>" (absent in
       version-0 files: that string is the class name), int length + class name, then the
       class's payload: ``torch.*Storage``: long n + n raw elements; ``torch.*Tensor``: int
       nDimension, nDimension longs (sizes), nDimension longs (strides), long storage offset
       (1-based), then the storage object (or nil); any other class (``nn.*`` modules,
       ``nn.Module:write``): one object, the table of its fields
5      boolean: int (1 = true)
6/7/8  function / legacy and recursive closure: bytecode (``string.dump``) + upvalues
=====  ===========================================================================

A reference index that was already read means "the same object again" (``readObject`` looks
the index up before it reads anything else), so shared modules and tensors, and cycles, come
back as the same Python object. Tables and objects are registered before their contents are
read, as in ``File:readObject``.

Safety: nothing is ever executed or imported. Serialised functions (tags 6, 7, 8: Lua bytecode
that ``File:readObject`` would ``loadstring``) are refused with :class:`Torch7UnsafeError`.
Classes with a C-level serialisation other than tensors and storages (``torch.Generator``,
``tds.*``) are refused. Every length is checked against the bytes left before anything is
allocated, every tensor view against its storage, and nesting depth is bounded.

What comes back: ``nil`` -> None, numbers -> float, strings -> str (bytes when not UTF-8),
booleans -> bool, tables -> dict (keys that are integral numbers become int; tables used as
keys are refused; see
:func:`lua_list` for array tables), tensors -> a contiguous ``torch.Tensor`` copy of the
view (``CudaTensor`` reads as float32, ``HalfTensor`` as float16), storages -> a 1-D
``torch.Tensor``, any other class -> :class:`TorchObject` (class name + field dict).
Distinct tensors that viewed one storage come back as independent copies (the values are the
same; the memory is not shared).

``long`` is 8 bytes (Linux / macOS files). Files written where C ``long`` is 4 bytes (Windows)
read with ``long_size=4``, as Lua's ``torch.load(f, 'b32')``.
"""
import math
import os
import re
import struct

import numpy as np
import torch

from .common import ConversionError

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION = 6, 7, 8

_ELEMENT = {'Byte': np.uint8, 'Char': np.int8, 'Short': np.int16, 'Int': np.int32,
            'Long': None, 'Float': np.float32, 'Double': np.float64, 'Half': np.float16}
# torch.<T>Tensor / torch.<T>Storage and cutorch's torch.Cuda<T>Tensor (torch.CudaTensor = Float)
_CLASS = re.compile(r'^torch\.(Cuda)?(Byte|Char|Short|Int|Long|Float|Double|Half)?'
                    r'(Tensor|Storage)$')
_REFUSED_CLASSES = re.compile(r'^(torch\.Generator|tds\..*)$')
MAX_DEPTH = 256
MAX_DIMS = 64
# fields of an nn module that hold its parameters (and batch-norm statistics)
PARAMETER_FIELDS = ('weight', 'bias', 'running_mean', 'running_var', 'running_std', 'a', 'b')


class Torch7Error(ConversionError, ValueError):
    """The data is not a valid (or not a supported) Torch7 binary serialisation (a
    :class:`ConversionError`, so ``tools/convert_checkpoint.py`` reports it as one)."""


class Torch7UnsafeError(Torch7Error):
    """The file holds serialised Lua functions (bytecode); they are never loaded."""


class TorchObject:
    """A Torch7 class instance that is not a tensor or storage (e.g. an ``nn`` module).

    Attributes:
        class_name: e.g. 'nn.SpatialConvolution'.
        version: the serialisation version (``'V 1'`` -> 1; 0 for files older than versioning).
        fields: dict of the instance's fields (``weight``, ``modules``, ...).
    """

    __slots__ = ('class_name', 'version', 'fields')

    def __init__(self, class_name, version=0, fields=None):
        self.class_name, self.version = class_name, version
        self.fields = {} if fields is None else fields

    def __getitem__(self, key):
        return self.fields[key]

    def __contains__(self, key):
        return key in self.fields

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return f'TorchObject({self.class_name!r}, fields={sorted(map(str, self.fields))})'


def _tensor_dtype(element, cuda, long_size):
    if element is None:  # torch.Tensor / torch.Storage / torch.CudaTensor: float
        return np.float32 if cuda else np.float64
    if element == 'Long':
        return np.int64 if long_size == 8 else np.int32
    return _ELEMENT[element]


class _Reader:
    def __init__(self, data, long_size):
        if long_size not in (4, 8):
            raise ValueError(f'long_size must be 4 or 8, got {long_size}')
        self.buf = memoryview(data)
        self.pos = 0
        self.long_fmt = '<q' if long_size == 8 else '<i'
        self.long_size = long_size
        self.objects = {}
        self.depth = 0

    # ------------------------------------------------------------------ primitives
    def _take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise Torch7Error(f'truncated Torch7 data: {n} bytes wanted at offset {self.pos}, '
                              f'{len(self.buf) - self.pos} left')
        start = self.pos
        self.pos += n
        return self.buf[start:self.pos]

    def read_int(self):
        return struct.unpack('<i', self._take(4))[0]

    def read_long(self):
        return struct.unpack(self.long_fmt, self._take(self.long_size))[0]

    def read_longs(self, n):
        return list(struct.unpack(f'{self.long_fmt[0]}{n}{self.long_fmt[1]}',
                                  self._take(n * self.long_size)))

    def read_double(self):
        return struct.unpack('<d', self._take(8))[0]

    def read_bytes(self):
        n = self.read_int()
        if n < 0:
            raise Torch7Error(f'negative string length {n} at offset {self.pos - 4}')
        return bytes(self._take(n))

    def read_string(self):
        raw = self.read_bytes()
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            return raw

    # ------------------------------------------------------------------ objects
    def read_object(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Torch7Error(f'objects nested deeper than {MAX_DEPTH} levels')
        try:
            return self._read_object()
        finally:
            self.depth -= 1

    def _read_object(self):
        at = self.pos
        tag = self.read_int()
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            return self.read_double()
        if tag == TYPE_BOOLEAN:
            return self.read_int() == 1
        if tag == TYPE_STRING:
            return self.read_string()
        if tag in (TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION):
            raise Torch7UnsafeError(
                f'the Torch7 data holds a serialised Lua function (type {tag}, offset {at}); '
                'functions are Lua bytecode that loading would execute, and are refused')
        if tag not in (TYPE_TABLE, TYPE_TORCH):
            raise Torch7Error(f'unknown Torch7 type tag {tag} at offset {at}')
        index = self.read_int()
        if index in self.objects:  # a reference to an object already read
            obj = self.objects[index]
            if obj is _IN_PROGRESS:
                raise Torch7Error(f'object {index} refers to itself while it is read '
                                  f'(offset {at})')
            return obj
        if tag == TYPE_TABLE:
            return self._read_table(index)
        return self._read_torch(index)

    def _read_table(self, index):
        table = {}
        self.objects[index] = table
        size = self.read_int()
        if size < 0 or size * 8 > len(self.buf) - self.pos:  # each entry: two >= 4-byte objects
            raise Torch7Error(f'bad table size {size} at offset {self.pos - 4}')
        for _ in range(size):
            key = self.read_object()
            value = self.read_object()
            if isinstance(key, float) and key.is_integer():
                key = int(key)
            elif isinstance(key, dict):
                raise Torch7Error(f'a table used as a table key (offset {self.pos}) is not '
                                  'supported')
            table[key] = value
        return table

    def _read_torch(self, index):
        version = self.read_string()
        m = re.match(r'^V (.*)$', version) if isinstance(version, str) else None
        number = None
        if m:
            try:
                number = float(m.group(1))
            except ValueError:
                number = None
        if number is None:  # a file from before the versioning system: that was the class
            class_name, number = version, 0
        else:
            class_name = self.read_string()
        if not isinstance(class_name, str):
            raise Torch7Error(f'class name {class_name!r} is not text')
        number = int(number) if float(number).is_integer() else number
        m = _CLASS.match(class_name)
        if m:
            cuda, element, kind = m.groups()
            if class_name == 'torch.CudaTensor' or class_name == 'torch.CudaStorage':
                element = 'Float'
            dtype = _tensor_dtype(element, bool(cuda), self.long_size)
            self.objects[index] = _IN_PROGRESS
            obj = (self._read_storage(dtype) if kind == 'Storage'
                   else self._read_tensor(dtype, class_name))
            self.objects[index] = obj
            return obj
        if class_name.startswith('torch.') and class_name.endswith(('Tensor', 'Storage')) \
                or _REFUSED_CLASSES.match(class_name):
            raise Torch7Error(f'Torch7 class {class_name!r} has its own binary serialisation, '
                              'which this reader does not support')
        obj = TorchObject(class_name, number)
        self.objects[index] = obj
        fields = self.read_object()
        if not isinstance(fields, dict):
            raise Torch7Error(f'{class_name}: expected a table of fields, got '
                              f'{type(fields).__name__}')
        obj.fields = fields
        return obj

    def _read_storage(self, dtype):
        at = self.pos
        size = self.read_long()
        itemsize = np.dtype(dtype).itemsize
        if size < 0 or size * itemsize > len(self.buf) - self.pos:
            raise Torch7Error(f'bad storage size {size} at offset {at}')
        raw = self._take(size * itemsize)
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder('<'), count=size)
        return torch.from_numpy(array.astype(np.dtype(dtype), copy=True))

    def _read_tensor(self, dtype, class_name):
        at = self.pos
        ndim = self.read_int()
        if not 0 <= ndim <= MAX_DIMS:
            raise Torch7Error(f'{class_name}: bad number of dimensions {ndim} at offset {at}')
        sizes = self.read_longs(ndim)
        strides = self.read_longs(ndim)
        offset = self.read_long() - 1  # written 1-based ("to respect Lua convention")
        storage = self.read_object()
        empty = torch.from_numpy(np.zeros(0, dtype=dtype))
        if storage is not None and (not isinstance(storage, torch.Tensor)
                                    or storage.dtype != empty.dtype or storage.dim() != 1):
            raise Torch7Error(f'{class_name} at offset {at}: its storage is '
                              f'{type(storage).__name__} / {getattr(storage, "dtype", None)}, '
                              f'not a {empty.dtype} storage')
        if ndim == 0:
            return empty
        if any(s < 0 for s in sizes) or any(s < 0 for s in strides) or offset < 0:
            raise Torch7Error(f'{class_name} at offset {at}: negative size / stride / offset '
                              f'({sizes}, {strides}, {offset + 1})')
        if math.prod(sizes) == 0:
            return empty.new_zeros(sizes)
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
        if storage is None or last >= storage.numel():
            raise Torch7Error(
                f'{class_name} at offset {at}: sizes {sizes}, strides {strides}, offset '
                f'{offset + 1} reach element {last + 1} of a storage of '
                f'{0 if storage is None else storage.numel()}')
        return torch.as_strided(storage, sizes, strides, offset).clone()


_IN_PROGRESS = object()


def read_t7(source, long_size=8):
    """Read one object serialised with Lua Torch7's ``torch.save`` (binary mode).

    Args:
        source: a path, or the file's bytes.
        long_size: size of a C ``long`` in the file (8; 4 for files written on Windows).

    Returns:
        the object (see the module docstring for the Python types).

    Raises:
        Torch7UnsafeError: the data holds serialised functions.
        Torch7Error: the data is truncated, malformed or uses an unsupported class.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source
    else:
        with open(os.fspath(source), 'rb') as f:
            data = f.read()
    reader = _Reader(data, long_size)
    try:
        obj = reader.read_object()
    except RecursionError:
        raise Torch7Error('objects nested too deeply') from None
    return obj


def lua_list(table):
    """A Lua array table ``{1: a, 2: b, ...}`` as a Python list ``[a, b, ...]``.

    Raises:
        Torch7Error: the keys are not exactly 1..n.
    """
    if not isinstance(table, dict) or sorted(table, key=str) != sorted(
            range(1, len(table) + 1), key=str):
        raise Torch7Error(f'not a Lua array table: keys {sorted(map(str, table))[:8]}')
    return [table[i] for i in range(1, len(table) + 1)]


def _key_order(item):
    key = item[0]
    return (0, key, '') if isinstance(key, (int, float)) and not isinstance(key, bool) \
        else (1, 0, str(key))


def module_parameters(obj, prefix=''):
    """The parameter tensors of a Torch7 ``nn`` module tree, keyed by their Lua path.

    A key is the chain of field names / table keys from ``obj`` to the tensor, joined with
    '.', e.g. ``trunk.modules.5.modules.1.weight`` for Lua's ``trunk.modules[5].modules[1]
    .weight``. Only tensors held by a torch object (a module) under one of
    :data:`PARAMETER_FIELDS` are kept (not ``gradWeight``, ``output``, buffers, or tensors in
    plain tables). A module reachable along several paths (shared references) appears under
    each path (the same tensor object); cycles are cut.

    Args:
        obj: a :class:`TorchObject` or dict from :func:`read_t7`.
        prefix: prepended to every key.

    Returns:
        dict {path: Tensor}, in Lua field order (array indices ascending, then names).
    """
    out = {}

    def visit(node, path, on_path):
        if isinstance(node, TorchObject):
            items, is_module = node.fields.items(), True
        elif isinstance(node, dict):
            items, is_module = node.items(), False
        else:
            return
        if id(node) in on_path:
            return
        on_path.add(id(node))
        for key, value in sorted(items, key=_key_order):
            child = f'{path}.{key}' if path else str(key)
            if isinstance(value, torch.Tensor):
                if is_module and key in PARAMETER_FIELDS:
                    out[child] = value
            else:
                visit(value, child, on_path)
        on_path.discard(id(node))

    visit(obj, prefix, set())
    return out


def is_torch7_file(path):
    """True for a ``.t7`` path (Torch7 files have no magic number; the suffix decides)."""
    return str(path).lower().endswith('.t7')


def torch7_state_dict(path, long_size=8):
    """The ``{Lua path: Tensor}`` parameters of a ``.t7`` model file (for the converters).

    A release file saved as ``{model = <nn module>, config = {...}}`` (facebookresearch/deepmask
    ``Trainer``'s ``modelsv``) gives the parameters of ``model``; a bare module its own.
    """
    obj = read_t7(path, long_size)
    if isinstance(obj, dict) and isinstance(obj.get('model'), TorchObject):
        obj = obj['model']
    if not isinstance(obj, (TorchObject, dict)):
        raise Torch7Error(f'{path}: holds a {type(obj).__name__}, not a model')
    return module_parameters(obj)


__all__ = ['Torch7Error', 'Torch7UnsafeError', 'TorchObject', 'read_t7', 'lua_list',
           'module_parameters', 'is_torch7_file', 'torch7_state_dict', 'PARAMETER_FIELDS']
