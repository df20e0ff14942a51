"""BoxCaseg (hustvl/BoxCaseg ``joint_training``, ``seg_hrnet_trans_fcn``) -> insplug ``BoxCaseg``.

Official layout: the release saves ``FullModel.state_dict()`` (keys ``model.`` + the
``HighResolutionNet`` keys; its training checkpoint wraps it as ``{'state_dict': ...}``), or the
bare ``HighResolutionNet`` keys. The HRNet trunk (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition{1,2,3}``, ``stage{2,3,4}``) has exactly mmdet's ``HRNet`` names (insplug's
``BilinearHRNet``); the head (``last_layer``, ``fcn``, ``transfer1``, ``transfer2``,
``transfer_bn``) goes under ``head.`` unchanged.
"""
from . import register_converter
from .common import rename_keys

__all__ = ['convert_boxcaseg', 'BOXCASEG_RULES', 'to_detectron2']

_P = r'^(?:model\.)?'
BOXCASEG_RULES = [
    (_P + r'((?:last_layer|fcn|transfer1|transfer2|transfer_bn)\..+)$', r'head.\1'),
    (_P + r'((?:conv1|bn1|conv2|bn2|layer1|transition[123]|stage[234])\..+)$', r'backbone.\1'),
]


@register_converter('boxcaseg', signature=[r'transfer1\.fc1\.weight$'],
                    source='BoxCaseg (hustvl/BoxCaseg joint_training, HRNet + transfer) .pth')
def convert_boxcaseg(state_dict):
    """Official ``{key: Tensor}`` -> insplug ``BoxCaseg`` (mmdet) layout."""
    return rename_keys(state_dict, BOXCASEG_RULES, method='boxcaseg')


def to_detectron2(state_dict):
    """insplug mmdet ``BoxCaseg`` (ResNet trunk) -> the detectron2 ``InsplugBoxCaseg`` layout
    (a plain detectron2 ResNet as ``backbone``; the head keys are the same). An HRNet trunk has
    no detectron2 counterpart in insplug: its keys raise ``ConversionError``."""
    from .to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = (mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.')
             + [(r'^(head\..+)$', r'\1')])
    return rename_keys(state_dict, rules, method='boxcaseg (to detectron2)')
