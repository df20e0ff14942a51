"""FCIS release (msracver/FCIS, MXNet) -> insplug's ``FCIS`` mmdet model.

The release's checkpoints (``fcis_coco-0000.params``) are MXNet NDArray files whose keys are
``arg:NAME`` / ``aux:NAME`` with the symbol's layer names (caffe ResNet-v1-101 names such as
``res4b22_branch2c_weight`` / ``bn4b22_branch2c_moving_var``, ``rpn_conv_3x3``,
``conv_new_1``, ``fcis_cls_seg``, ``fcis_bbox``). This converter takes such a dict
``{name: Tensor}`` (with or without the ``arg:`` / ``aux:`` prefix); reading the ``.params``
file itself needs MXNet (``mx.nd.load``), then ``torch.from_numpy`` of each array.

Tensor transforms:
* ``rpn_cls_score`` (2A channels, background block then foreground block, as the release's
  ``Reshape(0, 2, -1, 0)`` reads them) -> mmdet ``RPNHead.rpn_cls`` with ``use_sigmoid=False``
  (per anchor [foreground, background]: mmdet's softmax RPN scores column 0);
* every other tensor keeps its layout (``fcis_cls_seg`` / ``fcis_bbox`` channel orders are the
  ones PS RoI pooling reads in :mod:`insplug.core.position_sensitive`).
"""
import re

import torch

from insplug.converters import register_converter
from insplug.converters.common import rename_keys

_BN = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
       'moving_var': 'running_var'}


def _block_index(stage, letter):
    """'a' -> 0, 'b' -> 1, 'c' -> 2 (res2 / res5) or 'b1' -> 1 ... 'b22' -> 22 (res3 / res4)."""
    if letter == 'a':
        return 0
    if letter[1:]:
        return int(letter[1:])
    return ord(letter) - ord('a')


def caffe_resnet_key(name, dst_prefix='backbone.'):
    """Key of a caffe-named ResNet tensor in mmdet's ``ResNet`` (None if not a trunk key).

    Args:
        name: e.g. 'res4b3_branch2b_weight', 'bn4b3_branch2b_moving_mean', 'conv1_weight',
            'bn_conv1_gamma'.

    Returns:
        e.g. 'backbone.layer3.3.conv2.weight'.
    """
    if name == 'conv1_weight':
        return f'{dst_prefix}conv1.weight'
    m = re.match(r'^bn_conv1_(gamma|beta|moving_mean|moving_var)$', name)
    if m:
        return f'{dst_prefix}bn1.{_BN[m.group(1)]}'
    m = re.match(r'^(res|bn)([2-5])([a-z]\d*)_branch(1|2a|2b|2c)_'
                 r'(weight|gamma|beta|moving_mean|moving_var)$', name)
    if not m:
        return None
    kind, stage, letter, branch, what = m.groups()
    layer = f'layer{int(stage) - 1}.{_block_index(stage, letter)}'
    if branch == '1':
        mod = 'downsample.0' if kind == 'res' else 'downsample.1'
    else:
        n = {'2a': '1', '2b': '2', '2c': '3'}[branch]
        mod = f'conv{n}' if kind == 'res' else f'bn{n}'
    return f'{dst_prefix}{layer}.{mod}.{_BN.get(what, what)}'


@register_converter('fcis', signature=[r'fcis_cls_seg_weight$'],
                    source='FCIS (MXNet) .params arrays as {name: Tensor}')
def convert_fcis(state_dict):
    sd = {re.sub(r'^(arg|aux):', '', k): v for k, v in state_dict.items()}
    trunk = {}
    for key in list(sd):
        new = caffe_resnet_key(key)
        if new is not None:
            trunk[new] = sd.pop(key)
    rules = [
        (r'^rpn_conv_3x3_(weight|bias)$', r'rpn_head.rpn_conv.\1'),
        (r'^rpn_cls_score_(weight|bias)$', r'rpn_head.rpn_cls.\1'),
        (r'^rpn_bbox_pred_(weight|bias)$', r'rpn_head.rpn_reg.\1'),
        (r'^(conv_new_1|fcis_cls_seg|fcis_bbox)_(weight|bias)$', r'roi_head.head.\1.\2'),
    ]
    out = rename_keys(sd, rules, method='fcis')
    for suffix in ('weight', 'bias'):
        key = f'rpn_head.rpn_cls.{suffix}'
        if key in out:
            t = out[key]
            a = t.shape[0] // 2
            bg, fg = t[:a], t[a:]
            out[key] = torch.stack([fg, bg], 1).reshape(t.shape)
    out.update(trunk)
    return out


# --------------------------------------------------------------------------- MXNet .params
_MX_LIST_MAGIC = 0x112
_MX_V1_MAGIC = 0xF993FAC8
_MX_V2_MAGIC = 0xF993FAC9
_MX_DTYPES = {0: torch.float32, 1: torch.float64, 2: torch.float16, 3: torch.uint8,
              4: torch.int32, 5: torch.int8, 6: torch.int64}


def load_mxnet_params(path):
    """Arrays of an MXNet ``.params`` file (``mx.nd.save`` of a dict) as ``{name: Tensor}``,
    read with ``struct`` (no MXNet, nothing unpickled): the list magic 0x112, then per array the
    V2 (0xF993fac9, with a storage type), V1 (0xF993fac8) or legacy (32-bit shape) header,
    the context, the dtype flag and the raw little-endian data; then the names. Only dense
    arrays are read.

    Args:
        path: e.g. ``model/fcis_coco-0000.params``.

    Returns:
        dict ``{'arg:NAME' or 'aux:NAME': Tensor}``.
    """
    import struct

    import numpy as np

    with open(path, 'rb') as f:
        buf = f.read()
    pos = 0

    def read(fmt):
        nonlocal pos
        values = struct.unpack_from('<' + fmt, buf, pos)
        pos += struct.calcsize('<' + fmt)
        return values

    header, _reserved = read('QQ')
    if header != _MX_LIST_MAGIC:
        raise ValueError(f'{path}: not an MXNet NDArray list file (magic {header:#x})')
    (count,) = read('Q')
    arrays = []
    for _ in range(count):
        (magic,) = read('I')
        if magic in (_MX_V1_MAGIC, _MX_V2_MAGIC):
            if magic == _MX_V2_MAGIC:
                (stype,) = read('i')
                if stype != 0:
                    raise ValueError(f'{path}: sparse arrays (storage type {stype}) unsupported')
            (ndim,) = read('I')
            shape = read(f'{ndim}q')
        else:  # legacy: the magic was the number of dimensions, 32-bit sizes follow
            ndim = magic
            shape = read(f'{ndim}I')
        if ndim == 0:
            arrays.append(torch.zeros(0))
            continue
        read('ii')  # context: device type, device id
        (flag,) = read('i')
        dtype = _MX_DTYPES[flag]
        n = int(np.prod(shape))
        nbytes = n * torch.tensor([], dtype=dtype).element_size()
        data = np.frombuffer(buf, dtype=torch.empty(0, dtype=dtype).numpy().dtype, count=n,
                             offset=pos)
        pos += nbytes
        arrays.append(torch.from_numpy(data.copy()).view(*shape))
    (num_names,) = read('Q')
    names = []
    for _ in range(num_names):
        (length,) = read('Q')
        names.append(buf[pos:pos + length].decode())
        pos += length
    if len(names) != len(arrays):
        raise ValueError(f'{path}: {len(arrays)} arrays but {len(names)} names')
    return dict(zip(names, arrays))


def convert_params_file(src, dst=None, config=None):
    """Convert the release's ``.params`` file; optionally check it fills ``config``'s model.

    Args:
        src: ``fcis_coco-0000.params``; dst: output ``.pth`` (``{'state_dict', 'meta'}``);
        config: e.g. ``configs/fcis/fcis_r101_coco.py``.

    Returns:
        the converted ``{key: Tensor}``.
    """
    import os
    import os.path as osp

    from insplug.converters import (ConversionError, build_model_state, check_state_dict_fit,
                                    convert_state_dict)
    converted = convert_state_dict('fcis', load_mxnet_params(src))
    if config is not None:
        fit = check_state_dict_fit(build_model_state(config), converted)
        if not fit.ok:
            raise ConversionError(f'fcis: the converted checkpoint does not fill the model of '
                                  f'{config}: {fit.summary()}')
    if dst is not None:
        tmp = f'{dst}.tmp{os.getpid()}'
        torch.save({'state_dict': converted,
                    'meta': {'converted_from': 'fcis', 'source': osp.basename(str(src))}}, tmp)
        os.replace(tmp, dst)
    return converted


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser(
        description='FCIS release .params (MXNet) -> insplug checkpoint, without MXNet')
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--config', default=None)
    args = parser.parse_args()
    convert_params_file(args.src, args.dst, args.config)
