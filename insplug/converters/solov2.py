"""SOLOv2 (aim-uofa/AdelaiDet, detectron2) checkpoints -> insplug, and -> detectron2.

The released checkpoints (``SOLOv2_R50_3x.pth``, ``SOLOv2_R101_3x.pth``; AdelaiDet
configs/SOLOv2/README.md) are detectron2 files of the ``SOLOv2`` meta-architecture:

* ``backbone.bottom_up.*`` (detectron2 ResNet, FrozenBN) -> mmdet ``backbone.*``;
* ``backbone.fpn_lateral{2-5}``, ``backbone.fpn_output{2-5}`` -> mmdet ``neck.lateral_convs``,
  ``neck.fpn_convs`` (P6 is a parameter-free max-pool in both);
* ``ins_head.{cate,kernel}_tower.{3i}`` (conv, no bias) / ``.{3i+1}`` (GroupNorm) ->
  ``mask_head.{cls,kernel}_convs.{i}.conv`` / ``.gn``; ``ins_head.cate_pred`` ->
  ``mask_head.conv_cls``, ``ins_head.kernel_pred`` -> ``mask_head.conv_kernel``;
* ``mask_head.convs_all_levels.{i}.conv{j}.0/.1`` and ``mask_head.conv_pred.0/.1`` ->
  ``mask_head.mask_feature_head.convs_all_levels.{i}.conv{j}.conv/.gn`` and ``...conv_pred``.

The result is mmdet's ``SOLOv2`` / ``SOLOV2Head`` layout (``configs/solov2/``).
:func:`to_detectron2` maps it to insplug's detectron2 ``InsplugSOLOv2`` (detectron2 ResNet/FPN
names for the backbone, ``ins_head.*`` = :class:`insplug.core.solo.SOLOv2InstanceBranch`,
``mask_head.*`` = :class:`insplug.core.solo.MaskFeatBranch`); :func:`official_to_detectron2`
chains both. Only the released GroupNorm towers (``MODEL.SOLOV2.NORM: GN``) are mapped.
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import fpn_rules, rename_keys, resnet_rules
from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules


def _tower(dst):
    def repl(match):
        index = int(match.group(2))
        if index % 3 == 2:
            raise ValueError(f'{match.group(0)}: index {index} is an activation')
        part = 'conv' if index % 3 == 0 else 'gn'
        return f'{dst[match.group(1)]}.{index // 3}.{part}.{match.group(3)}'
    return repl


_TOWERS = dict(cate='mask_head.cls_convs', kernel='mask_head.kernel_convs')
_NORM_OR_CONV = {'0': 'conv', '1': 'gn'}

RULES = resnet_rules('detectron2', 'backbone.bottom_up.', 'backbone.') + \
    fpn_rules('detectron2', 'backbone.', 'neck.') + [
        (r'^ins_head\.(cate|kernel)_tower\.(\d+)\.(weight|bias)$', _tower(_TOWERS)),
        (r'^ins_head\.cate_pred\.(weight|bias)$', r'mask_head.conv_cls.\1'),
        (r'^ins_head\.kernel_pred\.(weight|bias)$', r'mask_head.conv_kernel.\1'),
        (r'^mask_head\.(convs_all_levels\.\d+\.conv\d+|conv_pred)\.([01])\.(weight|bias)$',
         lambda m: f'mask_head.mask_feature_head.{m.group(1)}.'
                   f'{_NORM_OR_CONV[m.group(2)]}.{m.group(3)}'),
    ]


@register_converter(
    'solov2',
    signature=[r'^ins_head\.kernel_tower\.\d+\.weight$',
               r'^mask_head\.convs_all_levels\.0\.conv0\.0\.weight$'],
    source='AdelaiDet SOLOv2 .pth')
def convert_solov2(state_dict):
    """Official AdelaiDet ``{key: Tensor}`` -> mmdet ``SOLOv2`` layout."""
    return rename_keys(state_dict, RULES, method='solov2')


def _mmdet_fpn_to_detectron2_rules(src_prefix='neck.', dst_prefix='backbone.', first=2,
                                   num_ins=4):
    p = re.escape(src_prefix)
    rules = []
    for i in range(num_ins):
        rules += [(rf'^{p}lateral_convs\.{i}\.conv\.(weight|bias)$',
                   rf'{dst_prefix}fpn_lateral{first + i}.\1'),
                  (rf'^{p}fpn_convs\.{i}\.conv\.(weight|bias)$',
                   rf'{dst_prefix}fpn_output{first + i}.\1')]
    return rules


D2_RULES = mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.bottom_up.') + \
    _mmdet_fpn_to_detectron2_rules() + [
        (r'^mask_head\.mask_feature_head\.(.*)$', r'mask_head.\1'),
        (r'^mask_head\.((cls_convs|kernel_convs|conv_cls|conv_kernel)\..*)$', r'ins_head.\1'),
    ]


def to_detectron2(state_dict):
    """insplug's mmdet ``SOLOv2`` layout (as :func:`convert_solov2` returns) -> insplug's
    detectron2 ``InsplugSOLOv2`` layout."""
    return rename_keys(state_dict, D2_RULES, method='solov2 (to detectron2)')


def official_to_detectron2(state_dict):
    """Official AdelaiDet ``{key: Tensor}`` -> insplug's detectron2 ``InsplugSOLOv2`` layout."""
    return to_detectron2(convert_solov2(state_dict))
