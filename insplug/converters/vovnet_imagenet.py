"""VoVNet ImageNet weights of the centermask2 README (``vovnet39_ese_detectron2.pth``,
``vovnet57_ese_detectron2.pth``, ..., trunk keys ``stem.stem_1/conv.weight``,
``stage2.OSA2_1...``, optionally prefixed ``backbone.bottom_up.``) -> insplug.

* :func:`convert_vovnet_imagenet` (registered ``vovnet_imagenet``): -> ``backbone.body.*`` of the
  mmdet ``VoVNetV2``, for ``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``;
* :func:`to_detectron2`: that layout -> ``backbone.bottom_up.body.*`` of insplug's detectron2
  ``InsplugVoVNet`` (``build_insplug_(fcos_)vovnet_(fpn_)backbone``), for ``MODEL.WEIGHTS``::

      python tools/convert_checkpoint.py vovnet_imagenet vovnet39_ese_detectron2.pth \\
          checkpoints/vovnet39_ese_insplug.pth
      python tools/convert_checkpoint.py vovnet_imagenet vovnet39_ese_detectron2.pth \\
          checkpoints/vovnet39_ese_insplug_d2.pth --to detectron2

The key mapping itself is :func:`insplug.converters.centermask._vovnet_key` (one place).
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import ConversionError, rename_keys

__all__ = ['convert_vovnet_imagenet', 'to_detectron2', 'D2_RULES']


@register_converter(
    'vovnet_imagenet',
    signature=[r'^(backbone\.bottom_up\.)?stem\.stem_1/conv\.weight$'],
    source='VoVNet ImageNet weights of the centermask2 README (detectron2 trunk layout)')
def convert_vovnet_imagenet(state_dict):
    """VoVNet trunk ``{key: Tensor}`` (keys ``stem.*``/``stage*``, optionally prefixed
    ``backbone.bottom_up.``) -> ``backbone.body.*``; a classifier (``fc``/``classifier``) is
    dropped."""
    from insplug.converters.centermask import _vovnet_key
    out, unmatched = {}, []
    for k, v in state_dict.items():
        src = 'backbone.bottom_up.' if k.startswith('backbone.bottom_up.') else ''
        new = _vovnet_key(k, src, 'backbone.body.')
        if new is not None:
            out[new] = v
        elif not re.match(r'^(fc|classifier)\.', k):
            unmatched.append(k)
    if unmatched:
        raise ConversionError(f'vovnet_imagenet: {len(unmatched)} key(s) have no place in '
                              f'insplug\'s VoVNetV2 (first: {", ".join(unmatched[:5])})')
    return out


# mmdet ``VoVNetV2`` (``backbone.body``) -> detectron2 ``InsplugVoVNet`` (``bottom_up.body``);
# FrozenBN has no ``num_batches_tracked``
D2_RULES = [(r'^backbone\.body\..*num_batches_tracked$', None),
            (r'^backbone\.body\.', 'backbone.bottom_up.body.')]


def to_detectron2(state_dict):
    """insplug mmdet-layout VoVNet trunk (output of :func:`convert_vovnet_imagenet`) ->
    insplug's detectron2 layout (``backbone.bottom_up.body.*``)."""
    return rename_keys(state_dict, D2_RULES, method='vovnet_imagenet (to detectron2)')
