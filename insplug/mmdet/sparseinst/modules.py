"""Register SparseInst's framework-free encoder and decoder as mmdet models.

``InstanceContextEncoder`` and ``IAMDecoder`` take plain constructor arguments, so the core
classes are registered as they are (no wrapper): see :mod:`insplug.core.sparseinst`.
"""
from insplug.core.sparseinst.decoder import IAMDecoder
from insplug.core.sparseinst.encoder import InstanceContextEncoder
from insplug.registry import MODELS

MODELS.register_module(module=InstanceContextEncoder)
MODELS.register_module(module=IAMDecoder)
