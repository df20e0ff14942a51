"""SparseInst (hustvl/SparseInst, detectron2) checkpoints -> insplug, and -> detectron2.

The released checkpoints (e.g. ``sparse_inst_r50_giam_aug_2b7d68.pth``) are detectron2 files
``{'model': {key: Tensor}, ...}`` of the ``SparseInst`` meta-architecture:

* ``backbone.stem.*``, ``backbone.res2..res5.*`` (detectron2 ResNet, FrozenBN) -> mmdet
  ``ResNet`` names (``backbone.conv1``, ``bn1``, ``layer1..4``) by the shared
  :func:`insplug.converters.common.resnet_rules`;
* ``encoder.*`` (``InstanceContextEncoder``): ``fpn_laterals.{i}`` / ``fpn_outputs.{i}`` are
  ordered from C5 to C3 in the release and from C3 to C5 in insplug (``laterals.{2-i}`` /
  ``outputs.{2-i}``); ``ppm.bottleneck`` -> ``ppm.bottleneck.0``; ``ppm.stages``, ``fusion``
  unchanged;
* ``decoder.*`` (``GroupIAMDecoder`` / ``BaseIAMDecoder`` / ``GroupIAMSoftDecoder``): the same names
  in insplug's ``IAMDecoder`` (``inst_branch.{inst_convs, iam_conv, fc, cls_score, mask_kernel,
  objectness, softmax_bias}``, ``mask_branch.{mask_convs, projection}``).

Every tensor is placed unchanged (1:1). Check against the R-50 G-IAM config::

    python tools/convert_checkpoint.py sparseinst sparse_inst_r50_giam_aug_2b7d68.pth \
        sparseinst_r50_giam_insplug.pth --config configs/sparseinst/sparseinst_r50_giam.py

:func:`to_detectron2` maps the converted (mmdet-layout) state_dict to insplug's detectron2
adapter ``InsplugSparseInst`` (detectron2 ResNet names for the backbone, insplug names for
encoder and decoder); :func:`insplug.converters.to_detectron2.save_detectron2_checkpoint` writes it
for ``MODEL.WEIGHTS``.
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import rename_keys, resnet_rules
from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules

NUM_LEVELS = 3  # C3, C4, C5

RULES = resnet_rules('detectron2', 'backbone.', 'backbone.') + [
    (r'^encoder\.ppm\.bottleneck\.(weight|bias)$', r'encoder.ppm.bottleneck.0.\1'),
    (r'^encoder\.(ppm\.stages\.\d+\.1\.(weight|bias))$', r'encoder.\1'),
    (r'^encoder\.fusion\.(weight|bias)$', r'encoder.fusion.\1'),
    (r'^(decoder\.(inst_branch|mask_branch)\..*)$', r'\1'),
]
_LEVEL = re.compile(r'^encoder\.fpn_(laterals|outputs)\.(\d+)\.(weight|bias)$')


def _rename_level(key):
    """``encoder.fpn_laterals.{i}`` (C5 first) -> ``encoder.laterals.{2 - i}`` (C3 first)."""
    match = _LEVEL.match(key)
    if not match:
        return None
    kind, index, param = match.groups()
    index = int(index)
    if index >= NUM_LEVELS:
        return None
    return f'encoder.{kind}.{NUM_LEVELS - 1 - index}.{param}'


@register_converter(
    'sparseinst',
    signature=[r'^encoder\.fpn_laterals\.0\.weight$', r'^decoder\.inst_branch\.iam_conv\.weight$'],
    source='SparseInst (hustvl, detectron2) .pth')
def convert_sparseinst(state_dict):
    """Official detectron2 ``{key: Tensor}`` -> insplug mmdet ``SparseInst`` layout."""
    out, rest = {}, {}
    for key, value in state_dict.items():
        new = _rename_level(key)
        if new is None:
            rest[key] = value
        else:
            out[new] = value
    out.update(rename_keys(rest, RULES, method='sparseinst'))
    return out


D2_RULES = mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.') + [
    (r'^((encoder|decoder)\..*)$', r'\1'),
]


def to_detectron2(state_dict):
    """insplug mmdet-layout SparseInst state_dict (the output of :func:`convert_sparseinst`) ->
    insplug's detectron2 ``InsplugSparseInst`` layout: the backbone back to detectron2's ResNet
    names (``stem``, ``res2..res5``, ``.norm``, ``shortcut``); encoder and decoder unchanged
    (the detectron2 adapter uses the same core modules as the mmdet one)."""
    return rename_keys(state_dict, D2_RULES, method='sparseinst (to detectron2)')
