"""RSIS (imatge-upc/rsis, PyTorch 0.2) -> insplug ``RSISSegmentor`` / ``RSISHead``.

The release saves two files per model (``encoder.pt``, ``decoder.pt``; ``models/<name>/`` of the
released Pascal VOC, Cityscapes and CVPPP models). Their keys are disjoint, so the converter reads
either their plain union or the union with ``encoder.`` / ``decoder.`` prefixes (what
``tools/merge_rsis_release.py`` writes). Official layout:

* encoder (``FeatureExtractor``): ``base.`` (torchvision ResNet-34/50/101; ``fc`` dropped),
  ``sk5..sk1`` (skip convs, deepest first is ``sk5``), ``bn5..bn1``;
* decoder (``RSIS``): ``clstm_list.{i}.Gates``, ``conv_out``, ``fc_class``, ``fc_stop``.

insplug: ``backbone.`` (mmdet ``ResNet`` names = torchvision's), ``head.skips.convs.{i}`` /
``head.skips.bns.{i}`` with i = 0 for ``sk5`` ... 4 for ``sk1``, ``head.decoder.clstm.{i}.gates``,
``head.decoder.conv_out``, ``head.decoder.fc_class``, ``head.decoder.fc_stop``. Tensors are
unchanged. The VGG-16 encoder variant has no insplug counterpart: its keys fail naming them.
"""
import re

from . import register_converter
from .common import rename_keys, resnet_rules

__all__ = ['convert_rsis', 'RSIS_RULES']

RSIS_RULES = (
    resnet_rules('torchvision', 'base.')
    + [(r'^sk([1-5])\.(weight|bias)$', lambda m: f'head.skips.convs.{5 - int(m.group(1))}.'
        f'{m.group(2)}'),
       (r'^bn([1-5])\.(weight|bias|running_mean|running_var|num_batches_tracked)$',
        lambda m: f'head.skips.bns.{5 - int(m.group(1))}.{m.group(2)}'),
       (r'^clstm_list\.(\d+)\.Gates\.(weight|bias)$', r'head.decoder.clstm.\1.gates.\2'),
       (r'^(conv_out|fc_class|fc_stop)\.(weight|bias)$', r'head.decoder.\1.\2')])


@register_converter('rsis', signature=[r'clstm_list\.0\.Gates\.weight$'],
                    source='RSIS (imatge-upc/rsis) encoder.pt + decoder.pt (merged)')
def convert_rsis(state_dict):
    """Official ``{key: Tensor}`` (encoder and decoder merged) -> insplug ``RSISSegmentor``."""
    plain = {re.sub(r'^(encoder|decoder)\.', '', k): v for k, v in state_dict.items()}
    return rename_keys(plain, RSIS_RULES, method='rsis')


# ----------------------------------------------------------------------------- detectron2
def to_detectron2(state_dict):
    """insplug mmdet-layout RSIS state_dict (the output of :func:`convert_rsis`) -> insplug's
    detectron2 ``InsplugRSIS``: mmdet ResNet -> detectron2 ResNet under
    ``backbone.bottom_up.*`` (``build_insplug_rsis_resnet_backbone``), ``head.skips.*`` ->
    ``skips.*``, ``head.decoder.*`` -> ``decoder.*``. Tensors are unchanged."""
    from .to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = (mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.bottom_up.')
             + [(r'^head\.(skips|decoder)\.', r'\1.')])
    return rename_keys(state_dict, rules, method='rsis')


def ris_to_detectron2(state_dict):
    """insplug mmdet-layout RIS state_dict (``RISSegmentor`` with an mmdet ``ResNet`` trunk) ->
    insplug's detectron2 ``InsplugRIS`` with ``build_resnet_backbone``: ``backbone.*`` ->
    detectron2 ResNet names under ``backbone.``, ``head.net.*`` -> ``net.*``. (RIS has no
    released PyTorch weights: this maps models trained with insplug.)"""
    from .to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = (mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.')
             + [(r'^head\.net\.', 'net.')])
    return rename_keys(state_dict, rules, method='ris')
