"""PRM (ZhouYanzhao/PRM, pytorch branch) and CountSeg (GuoleiSun/CountSeg) -> insplug
``PRMSegmentor`` / ``CountSegSegmentor``.

Both releases wrap a torchvision ResNet as ``FC_ResNet``: ``features`` = ``nn.Sequential(conv1,
bn1, relu, maxpool, layer1..layer4)`` and ``classifier.0`` (1x1 conv). PRM's
``PeakResponseMapping(nn.Sequential)`` holds it as child ``0``; CountSeg's (``peak_stimulation=
'addedmodule5'``) as ``backbond``, plus ``addedmodule.branch{1,2}`` = (BN, ReLU, 1x1 conv): branch1
the classification branch, branch2 the density branch. Checkpoints are saved from
``nn.DataParallel`` (``module.``, stripped by the framework). torchvision's block names equal
mmdet ResNet's; tensors are unchanged.
"""
from . import register_converter
from .common import rename_keys

_NORM = r'(weight|bias|running_mean|running_var|num_batches_tracked)$'


def _fc_resnet_rules(prefix):
    p = prefix.replace('.', r'\.')
    rules = [(rf'^{p}features\.0\.weight$', 'backbone.conv1.weight'),
             (rf'^{p}features\.1\.{_NORM}', r'backbone.bn1.\1')]
    for idx, stage in ((4, 1), (5, 2), (6, 3), (7, 4)):
        rules.append((rf'^{p}features\.{idx}\.(.*)$', rf'backbone.layer{stage}.\1'))
    rules.append((rf'^{p}classifier\.0\.(weight|bias)$', r'classifier.\1'))
    return rules


PRM_RULES = _fc_resnet_rules('0.')
COUNTSEG_RULES = _fc_resnet_rules('backbond.') + [
    (r'^addedmodule\.branch1\.(\d)\.(.*)$', r'cls_branch.\1.\2'),
    (r'^addedmodule\.branch2\.(\d)\.(.*)$', r'density_branch.\1.\2')]


@register_converter('prm', signature=[r'^0\.features\.0\.weight$', r'^0\.classifier\.0\.weight$'],
                    source='PRM (ZhouYanzhao/PRM pytorch branch, Nest) snapshot["model"]')
def convert_prm(state_dict):
    """Official PRM ``{key: Tensor}`` -> insplug ``PRMSegmentor`` layout."""
    return rename_keys(state_dict, PRM_RULES, method='prm')


@register_converter('countseg', signature=[r'^backbond\.classifier\.0\.weight$',
                                           r'^addedmodule\.branch2\.'],
                    source='CountSeg (GuoleiSun/CountSeg, addedmodule5) .pt["model"]')
def convert_countseg(state_dict):
    """Official CountSeg ``{key: Tensor}`` -> insplug ``CountSegSegmentor`` layout."""
    return rename_keys(state_dict, COUNTSEG_RULES, method='countseg')
