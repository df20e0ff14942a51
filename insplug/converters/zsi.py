"""ZSI (zhengye1995/Zero-shot-Instance-Segmentation, mmdet 1.x ``ZSI_48_17.pth`` /
``ZSI_65_15.pth``) -> insplug ``ZSIMaskRCNN``.

Official layout: ``backbone.`` / ``neck.`` (mmdet ResNet / FPN), ``rpn_head.`` (``rpn_conv``,
``rpn_cls_conv_T``, ``vec_fb``, ``rpn_reg``), ``bbox_head.`` (``shared_fcs``, ``fc_semantic``,
``kernel_semantic``, ``d_kernel_semantic``, ``d_fc_semantic``, ``fc_reg``, the unused
``fc_res``), ``mask_head.`` (``convs.{i}.conv``, ``upsample``, ``convT.conv``,
``kernel_semantic``, ``d_kernel_semantic``, ``dconvT.conv`` and the fixed class-vector convs
``conv_vec`` / ``con_vec_t`` / ``conv_vec_unseen`` / ``conv_voc``).

Transforms: ``vec_fb`` keeps the release's row order (bg, fg per anchor: insplug's head reads
the background rows from it and reorders the logits to mmdet 3.x's (fg, bg) after the conv);
``fc_reg`` drops the background class's 4 rows (mmdet 1.x regresses 1 + S classes, mmdet 3.x
S); the fixed class-vector convs and ``fc_res`` are dropped (insplug reads the class vectors
from the embedding file and syncs the background from the RPN at every forward). The bbox
head's vocabulary (``vocabulary_w2v.txt``) is not a checkpoint tensor in the release: load it
with ``ZSISemanticBBoxHead.load_vocabulary``.
"""
from . import register_converter
from .common import fpn_rules, rename_keys, resnet_rules

__all__ = ['convert_zsi', 'ZSI_RULES', 'to_detectron2']

_B, _M = r'^bbox_head\.', r'^mask_head\.'
ZSI_RULES = (
    resnet_rules('mmdet', 'backbone.')
    + fpn_rules('mmdet', 'neck.')
    + [(r'^rpn_head\.((rpn_conv|rpn_cls_conv_T|rpn_reg)\.(weight|bias))$', r'rpn_head.\1'),
       (r'^rpn_head\.vec_fb\.weight$', r'rpn_head.vec_fb.weight'),
       (_B + r'((shared_fcs\.\d+|fc_semantic|kernel_semantic|d_kernel_semantic|'
             r'd_fc_semantic|fc_reg)\.(weight|bias))$', r'roi_head.bbox_head.\1'),
       (_B + r'fc_res\.(weight|bias)$', None),
       (_M + r'(conv_vec|con_vec_t|conv_vec_unseen|conv_voc)\.weight$', None),
       (_M + r'((convs\.\d+\.conv|upsample|convT\.conv|kernel_semantic|d_kernel_semantic|'
             r'dconvT\.conv)\.(weight|bias))$', r'roi_head.mask_head.semantic.\1')])


@register_converter('zsi', signature=[r'^rpn_head\.vec_fb\.weight$'],
                    source='ZSI (zhengye1995/Zero-shot-Instance-Segmentation, mmdet 1.x) .pth')
def convert_zsi(state_dict):
    """Official ``{key: Tensor}`` -> insplug ``ZSIMaskRCNN`` layout."""
    out = rename_keys(state_dict, ZSI_RULES, method='zsi')
    for k in ('roi_head.bbox_head.fc_reg.weight', 'roi_head.bbox_head.fc_reg.bias'):
        if k in out:
            out[k] = out[k][4:].clone()  # the release's background class regression
    return out


# ----------------------------------------------------------------------------- detectron2
def _d2_rules():
    from .to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = mmdet_resnet_to_detectron2_rules()
    for i in range(4):
        rules += [(rf'^neck\.lateral_convs\.{i}\.conv\.', f'backbone.fpn_lateral{i + 2}.'),
                  (rf'^neck\.fpn_convs\.{i}\.conv\.', f'backbone.fpn_output{i + 2}.')]
    return rules + [
        (r'^rpn_head\.', 'proposal_generator.rpn_head.'),  # the same four layers
        (r'^roi_head\.bbox_head\.shared_fcs\.0\.', 'roi_heads.box_head.fc1.'),
        (r'^roi_head\.bbox_head\.shared_fcs\.1\.', 'roi_heads.box_head.fc2.'),
        (r'^roi_head\.bbox_head\.fc_reg\.', 'roi_heads.box_predictor.bbox_pred.'),
        (r'^roi_head\.bbox_head\.', 'roi_heads.box_predictor.'),  # fc_semantic, kernels, voc
        (r'^roi_head\.mask_head\.semantic\.', 'roi_heads.mask_head.semantic.'),
    ]


def to_detectron2(state_dict):
    """insplug mmdet-layout ``ZSIMaskRCNN`` state_dict (the output of :func:`convert_zsi`) ->
    the layout of insplug's detectron2 ``ZSIRCNN`` (tensors unchanged; the detectron2 config
    needs the same trunk: ``RESNETS.STRIDE_IN_1X1: False``, RGB input with the torchvision
    mean / std for the release's torchvision ResNet-101)."""
    return rename_keys(state_dict, _d2_rules(), method='zsi (to detectron2)')
