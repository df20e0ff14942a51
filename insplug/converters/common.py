"""Key-renaming rules shared by the converters of official checkpoints.

A converter maps an official ``{key: Tensor}`` to insplug's (mmdet model) layout with an
ordered list of ``(regex, replacement)`` rules: the first rule whose regex matches a key renames
it (``re.sub`` syntax, so ``\\1`` refers to groups); replacement ``None`` drops the key on
purpose. A key that no rule matches is an error naming the key, so every tensor of an official
checkpoint is either placed or dropped by a rule someone wrote down.

The standard trunks are translated here once:

* :func:`resnet_rules`: detectron2 (``stem``, ``res2..res5``, ``.norm``, ``shortcut``),
  maskrcnn-benchmark (``stem.conv1``/``stem.bn1``, ``layer1..4``), torchvision and mmdet
  (``conv1``/``bn1``/``layer1..4``/``downsample``) to mmdet's ``ResNet``;
* :func:`fpn_rules`: detectron2 (``fpn_lateral{L}``/``fpn_output{L}``/``top_block.p6``),
  maskrcnn-benchmark (``fpn_inner{i}``/``fpn_layer{i}``/``top_blocks.p6``) and mmdet
  (``lateral_convs``/``fpn_convs``) to mmdet's ``FPN``.
"""
import re


class ConversionError(KeyError):
    """An official checkpoint could not be converted; the message names the key(s)."""

    def __str__(self):  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ''


def rename_keys(state_dict, rules, method='checkpoint'):
    """Rename every key of ``state_dict`` by the first matching rule.

    Args:
        state_dict: ``{key: Tensor}`` in the official layout.
        rules: list of ``(regex, replacement or None)``.
        method: name used in the error message.

    Returns:
        dict ``{new key: Tensor}`` (dropped keys left out).

    Raises:
        ConversionError: a key matches no rule, or two keys map to the same new key.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out, unmatched, source_of = {}, [], {}
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if pattern.search(key):
                if repl is not None:
                    new_key = pattern.sub(repl, key, count=1)
                    if new_key in out:
                        raise ConversionError(
                            f'{method}: {key!r} and {source_of[new_key]!r} both map to '
                            f'{new_key!r}')
                    out[new_key] = value
                    source_of[new_key] = key
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise ConversionError(
            f'{method}: {len(unmatched)} key(s) of the checkpoint have no place in insplug\'s '
            f'model (first: {", ".join(unmatched[:5])}); is this a {method} checkpoint?')
    return out


def resnet_rules(src, src_prefix, dst_prefix='backbone.'):
    """Rules from an official ResNet trunk to mmdet's ``ResNet`` (torchvision names).

    Args:
        src: 'detectron2', 'maskrcnn_benchmark', 'torchvision' or 'mmdet'.
        src_prefix: the trunk's key prefix in the official checkpoint, e.g.
            'backbone.bottom_up.' (detectron2 FPN models), 'backbone.body.' (maskrcnn-benchmark),
            'backbone.' (mmdet), '' (a torchvision classification checkpoint).
        dst_prefix: prefix in insplug's model.

    Returns:
        list of ``(regex, replacement)``; the classification ``fc`` of torchvision is dropped.
    """
    p, d = re.escape(src_prefix), dst_prefix
    norm = r'(weight|bias|running_mean|running_var|num_batches_tracked)$'
    if src == 'detectron2':
        stage = lambda m: f'layer{int(m) - 1}'  # noqa: E731
        rules = [(rf'^{p}stem\.conv1\.weight$', f'{d}conv1.weight'),
                 (rf'^{p}stem\.conv1\.norm\.{norm}', rf'{d}bn1.\1')]
        for n in range(2, 6):
            rules += [
                (rf'^{p}res{n}\.(\d+)\.conv([123])\.weight$', rf'{d}{stage(n)}.\1.conv\2.weight'),
                (rf'^{p}res{n}\.(\d+)\.conv([123])\.norm\.{norm}', rf'{d}{stage(n)}.\1.bn\2.\3'),
                (rf'^{p}res{n}\.(\d+)\.conv2_offset\.(weight|bias)$',
                 rf'{d}{stage(n)}.\1.conv2.conv_offset.\2'),
                (rf'^{p}res{n}\.(\d+)\.shortcut\.weight$', rf'{d}{stage(n)}.\1.downsample.0.weight'),
                (rf'^{p}res{n}\.(\d+)\.shortcut\.norm\.{norm}',
                 rf'{d}{stage(n)}.\1.downsample.1.\2'),
            ]
        return rules
    if src == 'maskrcnn_benchmark':
        return [(rf'^{p}stem\.conv1\.weight$', f'{d}conv1.weight'),
                (rf'^{p}stem\.bn1\.{norm}', rf'{d}bn1.\1'),
                (rf'^{p}(layer[1-4]\.\d+\.(conv[123]|bn[123]|downsample\.[01])\..*)$', rf'{d}\1')]
    if src in ('torchvision', 'mmdet'):
        rules = [(rf'^{p}((conv1|bn1|layer[1-4])\..*)$', rf'{d}\1')]
        if src == 'torchvision':
            rules.append((rf'^{p}fc\.(weight|bias)$', None))
        return rules
    raise ValueError(f'resnet_rules: unknown src {src!r}')


def fpn_rules(src, src_prefix, dst_prefix='neck.', first=2, num_ins=4):
    """Rules from an official FPN to mmdet's ``FPN``.

    Args:
        src: 'detectron2', 'maskrcnn_benchmark' or 'mmdet'.
        src_prefix: e.g. 'backbone.' (detectron2), 'backbone.fpn.' (maskrcnn-benchmark),
            'neck.' (mmdet).
        first: the number in the name of the first lateral: detectron2 names laterals by
            level (``fpn_lateral2`` for C2, or ``fpn_lateral3`` when the FPN starts at C3);
            maskrcnn-benchmark by 1-based input index (``fpn_inner1``, or ``fpn_inner2`` when
            its first input channel count is 0, as in FCOS).
        num_ins: number of laterals; extra levels (``top_block.p6/p7``) become
            ``fpn_convs.{num_ins}`` and ``fpn_convs.{num_ins+1}`` as in mmdet's FPN.

    Returns:
        list of ``(regex, replacement)``.
    """
    p, d = re.escape(src_prefix), dst_prefix
    if src == 'mmdet':
        return [(rf'^{p}((lateral_convs|fpn_convs)\..*)$', rf'{d}\1')]
    names = {'detectron2': ('fpn_lateral', 'fpn_output', 'top_block'),
             'maskrcnn_benchmark': ('fpn_inner', 'fpn_layer', 'top_blocks')}
    if src not in names:
        raise ValueError(f'fpn_rules: unknown src {src!r}')
    lateral, output, top = names[src]
    rules = []
    for i in range(num_ins):
        rules += [(rf'^{p}{lateral}{first + i}\.(weight|bias)$', rf'{d}lateral_convs.{i}.conv.\1'),
                  (rf'^{p}{output}{first + i}\.(weight|bias)$', rf'{d}fpn_convs.{i}.conv.\1')]
    rules += [(rf'^{p}{top}\.p6\.(weight|bias)$', rf'{d}fpn_convs.{num_ins}.conv.\1'),
              (rf'^{p}{top}\.p7\.(weight|bias)$', rf'{d}fpn_convs.{num_ins + 1}.conv.\1')]
    return rules
