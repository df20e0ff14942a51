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
