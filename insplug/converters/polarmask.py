"""PolarMask (xieenze/PolarMask, mmdet 1.0 ``.pth``) -> insplug ``PolarMask`` / ``PolarMaskHead``.

Official layout (``model.state_dict()`` of mmdet 1.0): ``backbone.`` (mmdet ResNet, caffe
style: the same names as mmdet 3), ``neck.`` (mmdet FPN: ``lateral_convs`` / ``fpn_convs``),
``bbox_head.``: ``{cls,reg,mask}_convs.{i}.conv`` / ``.gn`` (no conv bias with GN),
``polar_cls``, ``polar_reg``, ``polar_centerness``, ``polar_mask`` (36 rays),
``scales_bbox.{l}.scale``, ``scales_mask.{l}.scale``.

insplug: ``conv_cls``, ``conv_reg``, ``conv_centerness``, ``conv_rays``, ``scales.{l}.scale``,
``scales_mask.{l}.scale``. The release's ray k points along (sin, cos) of 10k degrees, insplug's
ray j along (cos, sin) of 10j degrees: the output channels of ``polar_mask`` are permuted with
:func:`insplug.core.polarmask.targets.official_ray_order`. The DCN variants (``*_dcn2``
configs) have no insplug counterpart: their keys fail naming them.
"""
from insplug.core.polarmask.targets import official_ray_order

from . import register_converter
from .common import rename_keys, resnet_rules, fpn_rules

__all__ = ['convert_polarmask', 'POLARMASK_RULES']

_H = r'^bbox_head\.'
POLARMASK_RULES = (
    resnet_rules('mmdet', 'backbone.')
    + fpn_rules('mmdet', 'neck.')
    + [(_H + r'((cls|reg|mask)_convs\.\d+\.(conv|gn)\.(weight|bias))$', r'bbox_head.\1'),
       (_H + r'polar_cls\.(weight|bias)$', r'bbox_head.conv_cls.\1'),
       (_H + r'polar_reg\.(weight|bias)$', r'bbox_head.conv_reg.\1'),
       (_H + r'polar_centerness\.(weight|bias)$', r'bbox_head.conv_centerness.\1'),
       (_H + r'polar_mask\.(weight|bias)$', r'bbox_head.conv_rays.\1'),
       (_H + r'scales_bbox\.(\d+)\.scale$', r'bbox_head.scales.\1.scale'),
       (_H + r'scales_mask\.(\d+)\.scale$', r'bbox_head.scales_mask.\1.scale')])


@register_converter('polarmask', signature=[r'^bbox_head\.polar_mask\.weight$'],
                    source='PolarMask (xieenze/PolarMask, mmdet 1.0) .pth')
def convert_polarmask(state_dict):
    """Official ``{key: Tensor}`` -> insplug ``PolarMask`` layout, ray channels permuted."""
    out = rename_keys(state_dict, POLARMASK_RULES, method='polarmask')
    for name in ('bbox_head.conv_rays.weight', 'bbox_head.conv_rays.bias'):
        if name in out:
            order = official_ray_order(out[name].shape[0])
            out[name] = out[name][order].clone()
    for k, v in out.items():  # mmdet 1.0 Scale is 0-dim like mmcv's; tolerate (1,)
        if '.scales' in k and k.endswith('.scale') and v.dim() == 1:
            out[k] = v.reshape(())
    return out


# ----------------------------------------------------------------------------- detectron2
def to_detectron2(state_dict):
    """insplug mmdet-layout PolarMask state_dict (the output of :func:`convert_polarmask`) ->
    insplug's detectron2 ``InsplugPolarMask``: mmdet ResNet -> detectron2 ResNet
    (``backbone.bottom_up.*``; caffe-style trunks need ``RESNETS.STRIDE_IN_1X1: True``), mmdet
    FPN (laterals from C3) -> detectron2 ``FPN`` (``fpn_lateral3..5``, ``fpn_output3..5``,
    ``top_block.p6/p7``), ``bbox_head.*`` -> ``head.*`` (the same core ``PolarMaskHeadNet``
    names; rays already in insplug's order). Tensors are unchanged."""
    from .centermask import _d2_fpn_rules
    from .to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = (mmdet_resnet_to_detectron2_rules() + _d2_fpn_rules(state_dict)
             + [(r'^bbox_head\.', 'head.')])
    return rename_keys(state_dict, rules, method='polarmask (to detectron2)')


def official_to_detectron2(state_dict):
    """PolarMask release ``{key: Tensor}`` -> insplug's detectron2 ``InsplugPolarMask``."""
    return to_detectron2(convert_polarmask(state_dict))
