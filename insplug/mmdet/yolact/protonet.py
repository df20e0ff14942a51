"""Registers :class:`insplug.core.layers.protonet.ProtoNetEncoder` as ``ProtoNetEncoder``.

A plain PyTorch module (weights initialised by itself); build it in any head with
``MODELS.build(dict(type='ProtoNetEncoder', in_channels=256, num_protos=32, ...))``; it maps the
FPN tuple to (B, k, H, W) prototypes/bases.
"""
from insplug.core.layers.protonet import ProtoNetEncoder
from insplug.registry import MODELS

MODELS.register_module(name='ProtoNetEncoder', module=ProtoNetEncoder)
