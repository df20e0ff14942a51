"""Register SparseInst's framework-free encoder and decoder as mmdet models.

``IAMDecoder`` takes plain constructor arguments and is registered as it is.
``InstanceContextEncoder`` is registered through a thin subclass that also accepts its optional
``context`` module (replacing the pyramid pooling on C5) as a MODELS config: see
:mod:`insplug.core.sparseinst`.
"""
from insplug.core.sparseinst.decoder import IAMDecoder
from insplug.core.sparseinst.encoder import InstanceContextEncoder
from insplug.registry import MODELS


@MODELS.register_module(name='InstanceContextEncoder')
class InstanceContextEncoderFromConfig(InstanceContextEncoder):
    """:class:`InstanceContextEncoder` whose optional ``context`` is a MODELS config, e.g.
    ``dict(type='ASPP', in_channels=D, channels=D)`` (configs/swaps/sparseinst_aspp_r18_shapes.py).
    Without ``context`` it is the official encoder (pyramid pooling)."""

    def __init__(self, *args, context=None, **kwargs):
        if isinstance(context, dict):
            context = MODELS.build(context)
        super().__init__(*args, context=context, **kwargs)


MODELS.register_module(module=IAMDecoder)
