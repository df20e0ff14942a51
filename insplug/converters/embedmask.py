"""EmbedMask (yinghdb/EmbedMask, maskrcnn-benchmark / FCOS based) checkpoints -> insplug.

Official layout (``module.`` stripped): ``backbone.body.`` (maskrcnn-benchmark ResNet:
``stem.conv1``, ``stem.bn1``, ``layer1..4``), ``backbone.fpn.`` (``fpn_inner2..4``,
``fpn_layer2..4``, ``top_blocks.p6/p7``: the FCOS P3-P7 FPN from C3), ``rpn.head.`` (FCOS towers
``cls_tower`` / ``bbox_tower``, ``cls_logits``, ``bbox_pred``, ``centerness``, ``scales``, plus
``proposal_spatial_embed_pred``, ``proposal_other_embed_pred``, ``proposal_margin_pred``,
``margin_scales``, ``mask_tower``, ``pixel_spatial_embed_pred``, ``pixel_other_embed_pred``,
``position_scale``).

insplug: ``backbone.`` (mmdet ResNet), ``neck.`` (mmdet FPN, ``start_level=0`` on C3..C5 with
two extra convs on the output), ``bbox_head.`` (:class:`insplug.mmdet.embedmask.EmbedMaskHead`).
The released checkpoints are of the "new version" (D margins per proposal, ``margin_scales``);
a checkpoint of the earlier revision (one margin, no ``margin_scales``) converts too and loads
into a head with ``per_dim_margin=False``.
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import fpn_rules, rename_keys, resnet_rules
from insplug.converters.fcos import fcos_head_rules

HEAD = 'rpn.head.'


def _num_convs(state_dict):
    idx = [int(m.group(1)) for k in state_dict
           for m in [re.match(rf'^{re.escape(HEAD)}(?:cls|bbox|mask)_tower\.(\d+)\.', k)] if m]
    return max(idx) // 3 + 1 if idx else 4


def embedmask_head_rules(num_convs, src_prefix=HEAD, dst_prefix='bbox_head.'):
    """Rules of the official ``EmbedMaskHead`` (FCOS part from ``fcos_head_rules``)."""
    p, d = re.escape(src_prefix), dst_prefix
    rules = fcos_head_rules(src_prefix, dst_prefix, num_convs=num_convs, norm='GN', src='fcos')
    for i in range(num_convs):
        rules += [(rf'^{p}mask_tower\.{3 * i}\.(weight|bias)$', rf'{d}mask_convs.{i}.conv.\1'),
                  (rf'^{p}mask_tower\.{3 * i + 1}\.(weight|bias)$', rf'{d}mask_convs.{i}.gn.\1')]
    names = [('proposal_spatial_embed_pred', 'proposal_spatial'),
             ('proposal_other_embed_pred', 'proposal_other'),
             ('proposal_margin_pred', 'conv_margin'),
             ('pixel_spatial_embed_pred', 'pixel_spatial'),
             ('pixel_other_embed_pred', 'pixel_other')]
    rules += [(rf'^{p}{a}\.(weight|bias)$', rf'{d}{b}.\1') for a, b in names]
    rules += [(rf'^{p}margin_scales\.(\d+)\.scale$', rf'{d}margin_scales.\1.scale'),
              (rf'^{p}position_scale\.scale$', rf'{d}position_scale.scale')]
    return rules


@register_converter('embedmask',
                    signature=[r'^rpn\.head\.proposal_margin_pred\.weight$',
                               r'^rpn\.head\.pixel_other_embed_pred\.weight$'],
                    source='EmbedMask (yinghdb/EmbedMask, maskrcnn-benchmark) .pth')
def convert_embedmask(state_dict):
    rules = (resnet_rules('maskrcnn_benchmark', 'backbone.body.')
             + fpn_rules('maskrcnn_benchmark', 'backbone.fpn.', first=2, num_ins=3)
             + embedmask_head_rules(_num_convs(state_dict)))
    out = rename_keys(state_dict, rules, method='embedmask')
    for k in list(out):
        # official Scale parameters have shape (1,), mmcv's Scale shape ()
        if k.endswith('.scale') and out[k].dim() == 1 and out[k].numel() == 1:
            out[k] = out[k].reshape(())
    return out


def to_detectron2(state_dict):
    """insplug mmdet-layout EmbedMask state_dict (the output of :func:`convert_embedmask`) ->
    insplug's detectron2 ``InsplugEmbedMask``: detectron2 ResNet (``backbone.bottom_up.*``) and
    FPN (``backbone.fpn_{lateral,output}{3,4,5}``, ``backbone.top_block.p6/p7``), the FCOS head
    under AdelaiDet's names (``proposal_generator.fcos_head.*``), and the embedding branches
    under the official EmbedMask names (``embed_head.proposal_spatial_embed_pred``, ...,
    ``mask_tower``, ``margin_scales``, ``position_scale``). Scales get the official shape (1,);
    the backbone's ``num_batches_tracked`` are dropped. Tensors are unchanged::

        python tools/convert_checkpoint.py embedmask embed_mask_R50_1x.pth embedmask_d2.pth \\
            --to detectron2
    """
    from insplug.converters.fcos import (fcos_fpn_to_detectron2_rules,
                                         fcos_head_to_detectron2_rules,
                                         fix_fcos_scales_detectron2)
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    idx = [int(m.group(1)) for k in state_dict
           for m in [re.match(r'^bbox_head\.cls_convs\.(\d+)\.conv\.weight$', k)] if m]
    e = 'embed_head.'
    names = [('proposal_spatial', 'proposal_spatial_embed_pred'),
             ('proposal_other', 'proposal_other_embed_pred'),
             ('conv_margin', 'proposal_margin_pred'),
             ('pixel_spatial', 'pixel_spatial_embed_pred'),
             ('pixel_other', 'pixel_other_embed_pred')]
    rules = (mmdet_resnet_to_detectron2_rules() + fcos_fpn_to_detectron2_rules()
             + fcos_head_to_detectron2_rules(num_convs=max(idx) + 1 if idx else 0)
             + [(rf'^bbox_head\.{a}\.(weight|bias)$', rf'{e}{b}.\1') for a, b in names]
             + [(r'^bbox_head\.mask_convs\.(\d+)\.conv\.(weight|bias)$',
                 lambda m: f'{e}mask_tower.{3 * int(m.group(1))}.{m.group(2)}'),
                (r'^bbox_head\.mask_convs\.(\d+)\.gn\.(weight|bias)$',
                 lambda m: f'{e}mask_tower.{3 * int(m.group(1)) + 1}.{m.group(2)}'),
                (r'^bbox_head\.margin_scales\.(\d+)\.scale$', rf'{e}margin_scales.\1.scale'),
                (r'^bbox_head\.position_scale\.scale$', f'{e}position_scale.scale')])
    out = fix_fcos_scales_detectron2(
        rename_keys(state_dict, rules, method='embedmask (to detectron2)'))
    for k in list(out):
        if k.startswith(e) and k.endswith('.scale') and out[k].dim() == 0:
            out[k] = out[k].reshape(1)
    return out
