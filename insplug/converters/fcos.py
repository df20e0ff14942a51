"""Key rules for the FCOS heads of the official releases -> ``FaithfulFCOSHead`` (mmdet names).

Not a converter by itself (nothing is registered): the BlendMask, CenterMask and EmbedMask
converters use :func:`fcos_head_rules` for their FCOS part.

Official layouts (``{t}`` = cls / bbox):

* AdelaiDet and centermask2 (``proposal_generator.fcos_head.``): ``{t}_tower.{j}`` is a
  Sequential of [conv, norm, ReLU] x num_convs (norm absent with ``NORM: none``, BN/SyncBN as
  ModuleListDial per level: ``{t}_tower.{j}.{level}``), ``cls_logits``, ``bbox_pred``,
  ``ctrness``, ``scales.{l}.scale`` (shape (1,)), ``share_tower``;
* FCOS-official / maskrcnn-benchmark (``rpn.head.``): the same tower layout, ``centerness``
  instead of ``ctrness``.

mmdet: ``{cls,reg}_convs.{i}.conv`` / ``.gn``, ``conv_cls``, ``conv_reg``, ``conv_centerness``,
``scales.{l}.scale`` (shape ()).
"""
import re

__all__ = ['fcos_head_rules', 'fix_fcos_scales']


def fcos_head_rules(src_prefix, dst_prefix='bbox_head.', num_convs=4, norm='GN',
                    src='adelaidet'):
    """Rules from an official FCOS head to ``FaithfulFCOSHead``.

    Args:
        src_prefix: e.g. 'proposal_generator.fcos_head.' (AdelaiDet, centermask2) or
            'rpn.head.' (FCOS-official).
        dst_prefix: the head's prefix in insplug's model.
        num_convs: convs per tower.
        norm: 'GN' (conv, GN, ReLU per block) or None (conv, ReLU).
        src: 'adelaidet' / 'centermask2' (``ctrness``) or 'fcos' (``centerness``).

    Returns:
        list of ``(regex, replacement)``.
    """
    p, d = re.escape(src_prefix), dst_prefix
    step = 3 if norm else 2
    rules = []
    for tower, dst in (('cls', 'cls_convs'), ('bbox', 'reg_convs')):
        for i in range(num_convs):
            rules.append((rf'^{p}{tower}_tower\.{step * i}\.(weight|bias)$',
                          rf'{d}{dst}.{i}.conv.\1'))
            if norm:
                rules.append((rf'^{p}{tower}_tower\.{step * i + 1}\.(weight|bias)$',
                              rf'{d}{dst}.{i}.gn.\1'))
    ctr = 'centerness' if src == 'fcos' else 'ctrness'
    rules += [(rf'^{p}cls_logits\.(weight|bias)$', rf'{d}conv_cls.\1'),
              (rf'^{p}bbox_pred\.(weight|bias)$', rf'{d}conv_reg.\1'),
              (rf'^{p}{ctr}\.(weight|bias)$', rf'{d}conv_centerness.\1'),
              (rf'^{p}scales\.(\d+)\.scale$', rf'{d}scales.\1.scale')]
    return rules


def fix_fcos_scales(state_dict, dst_prefix='bbox_head.'):
    """Official ``Scale`` parameters have shape (1,), mmcv's shape (): reshape in place."""
    pat = re.compile(rf'^{re.escape(dst_prefix)}scales\.\d+\.scale$')
    for k in list(state_dict):
        if pat.match(k) and state_dict[k].dim() == 1:
            state_dict[k] = state_dict[k].reshape(())
    return state_dict


def fcos_head_to_detectron2_rules(src_prefix='bbox_head.',
                                  dst_prefix='proposal_generator.fcos_head.', num_convs=4,
                                  norm='GN'):
    """Rules from ``FaithfulFCOSHead`` (mmdet names) to insplug's detectron2
    :class:`~insplug.detectron2.fcos.InsplugFCOSHead` (AdelaiDet's names): the inverse of
    :func:`fcos_head_rules` with ``src='adelaidet'``. Use :func:`fix_fcos_scales_detectron2`
    on the result (mmcv ``Scale`` shape () -> AdelaiDet's (1,))."""
    p, d = re.escape(src_prefix), dst_prefix
    step = 3 if norm else 2
    rules = []
    for tower, src in (('cls', 'cls_convs'), ('bbox', 'reg_convs')):
        rules.append((rf'^{p}{src}\.(\d+)\.conv\.(weight|bias)$',
                      lambda m, t=tower: f'{d}{t}_tower.{step * int(m.group(1))}.{m.group(2)}'))
        if norm:
            rules.append((rf'^{p}{src}\.(\d+)\.gn\.(weight|bias)$',
                          lambda m, t=tower: f'{d}{t}_tower.{step * int(m.group(1)) + 1}.'
                                             f'{m.group(2)}'))
    rules += [(rf'^{p}conv_cls\.(weight|bias)$', rf'{d}cls_logits.\1'),
              (rf'^{p}conv_reg\.(weight|bias)$', rf'{d}bbox_pred.\1'),
              (rf'^{p}conv_centerness\.(weight|bias)$', rf'{d}ctrness.\1'),
              (rf'^{p}scales\.(\d+)\.scale$', rf'{d}scales.\1.scale')]
    return rules


def fix_fcos_scales_detectron2(state_dict, dst_prefix='proposal_generator.fcos_head.'):
    """mmcv ``Scale`` parameters (shape ()) -> AdelaiDet's (shape (1,)), in place."""
    pat = re.compile(rf'^{re.escape(dst_prefix)}scales\.\d+\.scale$')
    for k in list(state_dict):
        if pat.match(k) and state_dict[k].dim() == 0:
            state_dict[k] = state_dict[k].reshape(1)
    return state_dict


def fcos_fpn_to_detectron2_rules(src_prefix='neck.', dst_prefix='backbone.', num_ins=3,
                                 first=3):
    """Rules from mmdet's ``FPN`` on C3-C5 with two extra convs (P6/P7 on the output) to
    detectron2's ``FPN`` built by ``build_insplug_fcos_resnet_fpn_backbone``:
    ``lateral_convs.{i}`` / ``fpn_convs.{i}`` -> ``fpn_lateral{3+i}`` / ``fpn_output{3+i}``,
    ``fpn_convs.{num_ins}`` / ``{num_ins+1}`` -> ``top_block.p6`` / ``p7``."""
    p, d = re.escape(src_prefix), dst_prefix
    rules = []
    for i in range(num_ins):
        rules += [(rf'^{p}lateral_convs\.{i}\.conv\.', f'{d}fpn_lateral{first + i}.'),
                  (rf'^{p}fpn_convs\.{i}\.conv\.', f'{d}fpn_output{first + i}.')]
    rules += [(rf'^{p}fpn_convs\.{num_ins}\.conv\.', f'{d}top_block.p6.'),
              (rf'^{p}fpn_convs\.{num_ins + 1}\.conv\.', f'{d}top_block.p7.')]
    return rules
