"""A minimal writer of Lua Torch7's binary serialisation, for the reader's tests.

Written from the format as torch/torch7 ``File.lua`` (``File:writeObject``) and
``generic/Tensor.c`` / ``generic/Storage.c`` (``write``) define it, independently of
``insplug.converters.torch7``: 4-byte type tags (0 nil, 1 number, 2 string, 3 table, 4 torch
object, 5 boolean, 6/7/8 functions), a reference index for tables / torch objects / functions
(an object written again is only its index), ``"V 1"`` + class name for torch objects, tensors
as nDimension, sizes, strides, 1-based offset and their storage object, storages as a long
count + raw elements. Little-endian, int 4 bytes, long 8 bytes (4 with ``long_size=4``).

Python values: None -> nil, bool -> boolean, int / float -> number, str / bytes -> string, dict
-> table, :class:`LuaObject` -> torch object (its fields as a table, as ``nn.Module:write``),
numpy array -> a contiguous tensor with its own storage (class from the dtype),
:class:`Storage` / :class:`TensorView` -> explicit storages and views (shared storages,
strides, offsets), :class:`LuaFunction` -> a serialised function (bytecode + upvalues).
"""
import struct

import numpy as np

TENSOR_TYPES = {np.dtype(np.uint8): 'Byte', np.dtype(np.int8): 'Char',
                np.dtype(np.int16): 'Short', np.dtype(np.int32): 'Int',
                np.dtype(np.int64): 'Long', np.dtype(np.float32): 'Float',
                np.dtype(np.float64): 'Double', np.dtype(np.float16): 'Half'}


class LuaObject:
    """An instance of a Torch class: ``class_name`` + ``fields`` (dict); ``version=None``
    writes a version-0 (pre-versioning) header: the class name only."""

    def __init__(self, class_name, fields=None, version=1):
        self.class_name, self.fields, self.version = class_name, dict(fields or {}), version


class Storage:
    """A ``torch.<T>Storage`` holding ``array`` (1-D); ``class_name`` overrides the type
    (e.g. 'torch.CudaStorage')."""

    def __init__(self, array, class_name=None):
        self.array = np.ascontiguousarray(array).reshape(-1)
        self.class_name = class_name or f'torch.{TENSOR_TYPES[self.array.dtype]}Storage'


class TensorView:
    """A ``torch.<T>Tensor`` viewing ``storage`` (a :class:`Storage` or None) with element
    sizes / strides and a 0-based ``offset``."""

    def __init__(self, storage, sizes, strides, offset=0, class_name=None):
        self.storage, self.sizes, self.strides, self.offset = storage, sizes, strides, offset
        self.class_name = class_name or storage.class_name.replace('Storage', 'Tensor')


class LuaFunction:
    """A serialised Lua function (``tag`` 8: a closure with upvalues; 6: plain; 7: legacy)."""

    def __init__(self, bytecode=b'\x1bLJ\x02\x00fake bytecode', upvalues=None, tag=8):
        self.bytecode, self.upvalues, self.tag = bytecode, upvalues or {}, tag


class _Writer:
    def __init__(self, long_size):
        self.parts, self.index, self.count, self.alive = [], {}, 0, []
        self.long_fmt = '<q' if long_size == 8 else '<i'

    def int(self, v):
        self.parts.append(struct.pack('<i', v))

    def long(self, v):
        self.parts.append(struct.pack(self.long_fmt, v))

    def raw_string(self, b):
        self.int(len(b))
        self.parts.append(b)

    def _reference(self, obj):
        """Write the reference index; True when the object itself must follow."""
        key = id(obj)
        if key in self.index:
            self.int(self.index[key])
            return False
        self.count += 1
        self.index[key] = self.count
        self.alive.append(obj)
        self.int(self.count)
        return True

    def _torch_header(self, class_name, version=1):
        if version is not None:
            self.raw_string(f'V {version}'.encode())
        self.raw_string(class_name.encode())

    def obj(self, o):
        if o is None:
            self.int(0)
        elif isinstance(o, bool):
            self.int(5)
            self.int(1 if o else 0)
        elif isinstance(o, (int, float)):
            self.int(1)
            self.parts.append(struct.pack('<d', float(o)))
        elif isinstance(o, (str, bytes)):
            self.int(2)
            self.raw_string(o.encode() if isinstance(o, str) else o)
        elif isinstance(o, LuaFunction):
            self.int(o.tag)
            if o.tag != 6 and not self._reference(o):
                return
            self.raw_string(o.bytecode)
            self.obj(o.upvalues)
        elif isinstance(o, dict):
            self.int(3)
            if self._reference(o):
                self.int(len(o))
                for k, v in o.items():
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, np.ndarray):
            self.int(4)
            if self._reference(o):
                arr = np.ascontiguousarray(o)
                storage = Storage(arr)
                self.alive.append(storage)
                strides = [s // arr.itemsize for s in arr.strides]
                self._tensor_payload(TensorView(storage, list(arr.shape), strides, 0))
        elif isinstance(o, TensorView):
            self.int(4)
            if self._reference(o):
                self._tensor_payload(o)
        elif isinstance(o, Storage):
            self.int(4)
            if self._reference(o):
                self._torch_header(o.class_name)
                self.long(o.array.size)
                arr = o.array
                if arr.dtype == np.int64 and self.long_fmt == '<i':  # LongStorage: C longs
                    arr = arr.astype(np.int32)
                self.parts.append(arr.astype(arr.dtype.newbyteorder('<')).tobytes())
        elif isinstance(o, LuaObject):
            self.int(4)
            if self._reference(o):
                self._torch_header(o.class_name, o.version)
                self.obj(dict(o.fields))  # nn.Module:write: a fresh table of the fields
        else:
            raise TypeError(f'cannot write {type(o).__name__}')

    def _tensor_payload(self, view):
        self._torch_header(view.class_name)
        self.int(len(view.sizes))
        for s in view.sizes:
            self.long(s)
        for s in view.strides:
            self.long(s)
        self.long(view.offset + 1)  # 1-based
        self.obj(view.storage)


def write_t7(obj, long_size=8):
    """Serialise ``obj`` as ``torch.save`` (binary mode) does; returns the bytes."""
    writer = _Writer(long_size)
    writer.obj(obj)
    return b''.join(writer.parts)
