"""Converted checkpoints for insplug's detectron2 adapters (every method that has one).

Each method with a detectron2 adapter has a ``to_detectron2(state_dict)`` in its converter
module, mapping insplug's mmdet layout to the adapter's. Here:

* :func:`save_detectron2_checkpoint` writes ``{'model': ...}`` for ``MODEL.WEIGHTS``;
* :func:`detectron2_state_of` reads a file written by ``tools/convert_checkpoint.py`` as the
  detectron2 layout (used by :class:`insplug.detectron2.checkpoint.SafeDetectionCheckpointer`,
  so the converted file loads in both frameworks as it is);
* :func:`convert_checkpoint_to_detectron2` goes from the official file to a detectron2 file
  (``tools/convert_checkpoint.py METHOD IN OUT --to detectron2``).
"""
import importlib
import re

import torch

from insplug.converters.common import ConversionError


def mmdet_resnet_to_detectron2_rules(src_prefix='backbone.', dst_prefix='backbone.bottom_up.'):
    """Rules from mmdet's (torchvision-named) ``ResNet`` to detectron2's ``ResNet``.

    ``num_batches_tracked`` is dropped (detectron2's FrozenBN/BN checkpoints do not need it).
    """
    p, d = re.escape(src_prefix), dst_prefix
    norm = r'(weight|bias|running_mean|running_var)$'
    rules = [(rf'^{p}conv1\.weight$', f'{d}stem.conv1.weight'),
             (rf'^{p}bn1\.{norm}', rf'{d}stem.conv1.norm.\1'),
             (rf'^{p}.*num_batches_tracked$', None)]
    for n in range(1, 5):
        res = f'res{n + 1}'
        rules += [
            (rf'^{p}layer{n}\.(\d+)\.conv([123])\.weight$', rf'{d}{res}.\1.conv\2.weight'),
            (rf'^{p}layer{n}\.(\d+)\.bn([123])\.{norm}', rf'{d}{res}.\1.conv\2.norm.\3'),
            (rf'^{p}layer{n}\.(\d+)\.downsample\.0\.weight$', rf'{d}{res}.\1.shortcut.weight'),
            (rf'^{p}layer{n}\.(\d+)\.downsample\.1\.{norm}', rf'{d}{res}.\1.shortcut.norm.\2'),
        ]
    return rules


def save_detectron2_checkpoint(state_dict, dst):
    """Write ``{'model': state_dict, '__author__': 'insplug'}``: what detectron2's
    ``DetectionCheckpointer`` loads from ``MODEL.WEIGHTS`` (no name-matching heuristics)."""
    torch.save({'model': dict(state_dict), '__author__': 'insplug'}, dst)


def detectron2_mapping(method):
    """The ``to_detectron2`` of ``insplug.converters.<method>``, or None where the method has no
    detectron2 layout."""
    if not isinstance(method, str) or not method.isidentifier():
        return None
    try:
        module = importlib.import_module(f'insplug.converters.{method}')
    except ImportError:
        return None
    return getattr(module, 'to_detectron2', None)


def detectron2_methods():
    """Names of the converters that also map to a detectron2 adapter's layout (sorted)."""
    import pkgutil

    import insplug.converters as package
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                  if detectron2_mapping(info.name) is not None)


def detectron2_state_of(checkpoint):
    """The detectron2-layout state_dict of a file written by ``tools/convert_checkpoint.py
    METHOD`` (mmengine ``{'state_dict', 'meta': {'converted_from': METHOD}}``, METHOD one of
    :func:`detectron2_methods`), or None for any other checkpoint (so a detectron2 checkpointer reads the converted file as it
    is)."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        return None
    meta = checkpoint.get('meta')
    method = meta.get('converted_from') if isinstance(meta, dict) else None
    mapping = detectron2_mapping(method)
    if mapping is None:
        return None
    return mapping(checkpoint['state_dict'])


def convert_checkpoint_to_detectron2(method, src, dst, config=None, trust=None):
    """An official checkpoint -> a detectron2 checkpoint for insplug's detectron2 adapter.

    ``method`` is one of :func:`detectron2_methods` (the methods with a detectron2 adapter). The
    official file is converted (and, with ``config``, checked strictly) as by
    :func:`insplug.converters.convert_checkpoint`, mapped by the method's ``to_detectron2`` and
    written by :func:`save_detectron2_checkpoint`::

        convert_checkpoint_to_detectron2('sparseinst', 'sparse_inst_r50_giam_aug_2b7d68.pth',
                                         'sparseinst_r50_giam_d2.pth',
                                         config='configs/sparseinst/sparseinst_r50_giam.py')

    Returns:
        the detectron2-layout ``{key: Tensor}``.
    """
    from insplug.converters import convert_checkpoint
    mapping = detectron2_mapping(method)
    if mapping is None:
        raise ConversionError(f'{method}: no detectron2 layout; the methods with one are: '
                              + ', '.join(detectron2_methods()))
    state = mapping(convert_checkpoint(method, src, config=config, trust=trust))
    save_detectron2_checkpoint(state, dst)
    return state
