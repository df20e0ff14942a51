"""Official checkpoints of the semantic-segmentation components -> insplug layouts.

* ``drn`` (fyu/drn ``drn_c_26-ddedf421.pth`` ... ``drn_d_105-12b40979.pth``, ImageNet): the
  keys are insplug's :class:`~insplug.core.backbones.drn.DRN` keys; they go under ``backbone.``
  (mmdet models) and the ImageNet classifier ``fc.*`` is dropped;
* ``espnet`` (sacmehta/ESPNet ``pretrained/encoder/espnet_p_2_q_8.pth`` (ESPNet-C) or the full
  ``ESPNet`` with ``encoder.`` prefix): the encoder keys go under ``backbone.``; the encoder's
  1x1 classifier and the light-weight decoder (``level3_C``, ``br``, ``conv``, ``up_l3``,
  ``combine_l2_l3``, ``up_l2``, ``classifier``) are dropped (insplug has the encoder only);
* ``upernet`` (CSAILVision/semantic-segmentation-pytorch ``decoder_epoch_*.pth`` of a UPerNet
  decoder): keys go under ``fusion.`` (the layout of ``UPerNetNeck`` and
  ``UPerNetSemanticBranch``; prefix the owning module's name, e.g. ``neck.``); the classifier
  ``conv_last.1`` and the release's SyncBN accumulation buffers (``_tmp_running_mean``,
  ``_tmp_running_var``, ``_running_iter``) are dropped, ``fpn_out.i.0.*`` (one more nesting in
  the release) becomes ``fpn_out.i.*``;
* ``ocnet_base_oc`` (openseg-group/OCNet.pytorch ``BaseOC_Module`` state dict): identical keys
  (the ``InPlaceABNSync`` of the release is insplug's ``BatchNorm2d`` + ``LeakyReLU(0.01)`` at
  the same index; the release's ``f_query`` is ``f_key`` itself, its duplicate keys are dropped).
"""
from insplug.converters import register_converter
from insplug.converters.common import rename_keys


@register_converter('drn', signature=[r'^layer5\.\d+\.', r'^layer8\.\d+\.'],
                    source='fyu/drn ImageNet .pth (drn_c_*/drn_d_*)')
def convert_drn(state_dict):
    return rename_keys(state_dict, [(r'^fc\.', None),
                                    (r'^((conv1|bn1)\.|layer\d\.)', r'backbone.\1')],
                       method='drn')


ESPNET_DECODER = r'^(level3_C|br|conv|up_l3|combine_l2_l3|up_l2|classifier)\.'


@register_converter('espnet', signature=[r'level2_0\.', r'level3_0\.'],
                    source='sacmehta/ESPNet encoder / ESPNet .pth')
def convert_espnet(state_dict):
    return rename_keys(state_dict, [(r'^encoder\.classifier\.', None),
                                    (r'^encoder\.', 'backbone.'),
                                    (r'^(level1|b1|level2_0|level2|b2|level3_0|level3|b3)\.',
                                     r'backbone.\1.'),
                                    (ESPNET_DECODER, None)], method='espnet')


@register_converter('upernet', signature=[r'^ppm_last_conv\.', r'^fpn_in\.'],
                    source='CSAILVision semantic-segmentation-pytorch UPerNet decoder .pth')
def convert_upernet(state_dict):
    return rename_keys(state_dict, [(r'^conv_last\.1\.', None),
                                    # buffers of the release's SynchronizedBatchNorm2d
                                    (r'\.(_tmp_running_mean|_tmp_running_var|_running_iter)$',
                                     None),
                                    # the release nests each fpn_out conv-BN-ReLU once more
                                    (r'^fpn_out\.(\d+)\.0\.', r'fusion.fpn_out.\1.'),
                                    (r'^(ppm_conv|ppm_last_conv|fpn_in|fpn_out|conv_last)\.',
                                     r'fusion.\1.')], method='upernet')


@register_converter('ocnet_base_oc', signature=[r'stages\.0\.f_key\.', r'^conv_bn_dropout\.'],
                    source='openseg-group/OCNet.pytorch BaseOC_Module state dict')
def convert_ocnet_base_oc(state_dict):
    # f_query is the same module as f_key in the release (its keys are duplicates)
    return rename_keys(state_dict, [(r'^stages\.\d+\.f_query\.', None),
                                    (r'^(stages\.\d+\.(f_key|f_value|W)|conv_bn_dropout)\.',
                                     r'\1.')], method='ocnet_base_oc')
