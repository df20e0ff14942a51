"""SpatialEmbeddings (davyneven/SpatialEmbeddings) ``BranchedERFNet`` checkpoints -> insplug.

The released checkpoint (``cars_pretrained_model.pth``, saved by src/train.py) holds
``{'epoch', 'best_iou', 'model_state_dict', 'optim_state_dict', 'logger_data'}``; its
``model_state_dict`` comes from a ``DataParallel`` model (``module.`` prefix, stripped by the
framework). Official layout -> insplug's ``BottomUpSegmentor`` with an ``ERFNet`` backbone and a
``SpatialEmbeddingHead``:

* ``encoder.initial_block.*`` -> ``backbone.encoder.layers.0.*``;
* ``encoder.layers.{i}.*`` -> ``backbone.encoder.layers.{i+1}.*``;
* ``encoder.output_conv.*`` is dropped: the encoder-only classifier of ERFNet, never used when
  the decoders run (``forward(only_encode=False)``);
* ``decoders.{d}.layers.*`` -> ``backbone.decoders.{d}.layers.*``;
* ``decoders.0.output_conv.*`` (offsets x, y + sigma) -> ``head.outputs.embedding.conv.*``;
* ``decoders.1.output_conv.*`` (seed map) -> ``head.outputs.seed.conv.*``.

Check against ``configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py``::

    python tools/convert_checkpoint.py spatialembeddings cars_pretrained_model.pth \
        spatialembeddings_cars_insplug.pth \
        --config configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import rename_keys

RULES = [
    (r'^encoder\.initial_block\.', 'backbone.encoder.layers.0.'),
    (r'^encoder\.layers\.', 'backbone.encoder.layers.'),
    (r'^encoder\.output_conv\.', None),  # ERFNet's encoder-only classifier, unused
    (r'^decoders\.(\d+)\.layers\.', r'backbone.decoders.\1.layers.'),
    (r'^decoders\.0\.output_conv\.', 'head.outputs.embedding.conv.'),
    (r'^decoders\.1\.output_conv\.', 'head.outputs.seed.conv.'),
]


def _shift_encoder_layer(key):
    """``encoder.layers.{i}`` -> ``encoder.layers.{i+1}`` (insplug's layer 0 is the official
    ``initial_block``)."""
    match = re.match(r'^encoder\.layers\.(\d+)\.(.*)$', key)
    return f'encoder.layers.{int(match.group(1)) + 1}.{match.group(2)}' if match else key


@register_converter(
    'spatialembeddings',
    signature=[r'^encoder\.initial_block\.conv\.weight$', r'^decoders\.1\.output_conv\.weight$'],
    source='SpatialEmbeddings (davyneven) BranchedERFNet .pth, model_state_dict')
def convert_spatialembeddings(state_dict):
    """Official ``BranchedERFNet`` ``{key: Tensor}`` -> insplug ``BottomUpSegmentor`` layout."""
    shifted = {_shift_encoder_layer(k): v for k, v in state_dict.items()}
    return rename_keys(shifted, RULES, method='spatialembeddings')


# ----------------------------------------------------------------------------- detectron2
def _d2_rules():
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    fpn = []
    for i in range(4):
        fpn += [(rf'^neck\.lateral_convs\.{i}\.conv\.', f'backbone.fpn_lateral{i + 2}.'),
                (rf'^neck\.fpn_convs\.{i}\.conv\.', f'backbone.fpn_output{i + 2}.')]
    return [
        # ERFNet (insplug's ERFNetBackbone has the core module's names)
        (r'^backbone\.(encoder|decoders)\.', r'backbone.\1.'),
    ] + mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.bottom_up.') + fpn + [
        (r'^head\.outputs\.', 'outputs.'),
    ]


def to_detectron2(state_dict):
    """insplug mmdet-layout ``BottomUpSegmentor`` state_dict (the output of
    :func:`convert_spatialembeddings`, or any insplug SpatialEmbeddings / discriminative-loss
    checkpoint) -> insplug's detectron2 layout (``InsplugSpatialEmbeddings`` /
    ``InsplugDiscriminative``).

    ERFNet keys stay (``backbone.encoder.*``, ``backbone.decoders.*``: the detectron2 backbone is
    the same core module); a ResNet-FPN trunk maps to detectron2's ``build_resnet_fpn_backbone``
    names (``backbone.bottom_up.*``, ``backbone.fpn_lateral{2-5}``, ``backbone.fpn_output{2-5}``;
    mmdet's max-pooled P6 has no weights); ``head.outputs.*`` -> ``outputs.*``. The tensors are
    unchanged.
    """
    return rename_keys(state_dict, _d2_rules(), method='spatialembeddings (to detectron2)')
