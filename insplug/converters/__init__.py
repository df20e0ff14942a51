"""Converters of official checkpoints to insplug's model layout.

    python tools/convert_checkpoint.py METHOD IN OUT [--config CONFIG]

or in Python::

    from insplug.converters import convert_checkpoint, convert_state_dict
    convert_checkpoint('polarmask', 'polar_768_1x_r50.pth', 'polarmask_insplug.pth',
                       config='configs/polarmask/polarmask_r50_1x.py')

Each method's converter lives in its own module here (``insplug/converters/<method>.py``,
imported automatically) and registers a function ``official {key: Tensor} -> insplug
{key: Tensor}`` with :func:`register_converter`, together with a *signature*: regexes that keys
of that release's checkpoints match. The signature lets a wrong checkpoint fail clearly ("this
looks like a CenterMask checkpoint, not a PolarMask one") instead of half-loading.

Checkpoints are read with :func:`insplug.checkpoints.safe_load` (weights-only). The output is an
mmengine-style ``{'state_dict': ..., 'meta': ...}`` that ``tools/test.py CONFIG OUT`` and
``load_from`` accept. With ``config`` the model is built and every one of its tensors must be
filled, with the right shape, or the conversion fails naming the keys.
"""
import importlib
import os
import os.path as osp
import pkgutil
import re
from dataclasses import dataclass, field

import torch

from insplug.checkpoints.fit import check_state_dict_fit, state_dict_of
from insplug.checkpoints.safe_load import safe_load
from .common import ConversionError

CONVERTERS = {}


@dataclass
class Converter:
    name: str
    convert: object
    signature: list = field(default_factory=list)
    source: str = ''

    def matches(self, keys):
        """True when every signature regex matches at least one key."""
        return bool(self.signature) and all(
            any(re.search(pattern, k) for k in keys) for pattern in self.signature)


def register_converter(name, signature, source=''):
    """Decorator registering ``fn(official_state_dict) -> insplug_state_dict`` under ``name``.

    Args:
        name: the METHOD argument of ``tools/convert_checkpoint.py``.
        signature: list of regexes; each matches at least one key of that release's
            checkpoints (after a 'module.' prefix is stripped) and, together, no other
            release's.
        source: one line naming the release format, shown by ``--list``.
    """
    def wrap(fn):
        if name in CONVERTERS:
            raise KeyError(f'a converter named {name!r} is already registered')
        CONVERTERS[name] = Converter(name, fn, list(signature), source)
        return fn
    return wrap


def _import_all():
    for module in pkgutil.iter_modules(__path__):
        if module.name != 'common':
            importlib.import_module(f'{__name__}.{module.name}')


def get_converter(name):
    _import_all()
    if name not in CONVERTERS:
        raise ConversionError(f'no converter named {name!r}; known: {", ".join(sorted(CONVERTERS))}')
    return CONVERTERS[name]


def detect_method(keys):
    """The name of the first converter whose signature the keys match, or None."""
    _import_all()
    keys = list(keys)
    for name, converter in sorted(CONVERTERS.items()):
        if converter.matches(keys):
            return name
    return None


def convert_state_dict(method, state_dict):
    """Convert an official ``{key: Tensor}`` of ``method`` to insplug's layout.

    Raises:
        ConversionError: the keys are not those of a ``method`` checkpoint (the message names
            the method they look like, if any), or a key has no place in insplug's model.
    """
    converter = get_converter(method)
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    if not converter.matches(state_dict):
        other = detect_method(state_dict)
        hint = f'; it looks like a {other} checkpoint' if other and other != method else ''
        raise ConversionError(
            f'this is not a {method} checkpoint ({converter.source}): none of its keys match '
            f'{converter.signature}{hint}')
    return converter.convert(state_dict)


def build_model_state(config):
    """The state_dict of the model that ``config`` (a path) builds, for a strict check."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import insplug  # noqa: F401
    from insplug.registry import MODELS
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'insplug'))
    model = MODELS.build(cfg.model)
    return model.state_dict()


def convert_checkpoint(method, src, dst=None, config=None, trust=None):
    """Read ``src`` (weights-only), convert it, optionally check it against ``config``, save.

    Args:
        method: converter name (``tools/convert_checkpoint.py --list``).
        src: the official checkpoint file.
        dst: where to write the converted checkpoint (None: don't write).
        config: an insplug config path: every model tensor must be filled, with its shape.
        trust: passed to :func:`insplug.checkpoints.safe_load` (full unpickle opt-in).

    Returns:
        the converted ``{key: Tensor}``.
    """
    from .torch7 import is_torch7_file, torch7_state_dict  # Lua Torch .t7: not a pickle
    checkpoint = torch7_state_dict(src) if is_torch7_file(src) else safe_load(src, trust=trust)
    converted = convert_state_dict(method, state_dict_of(checkpoint))
    if config is not None:
        fit = check_state_dict_fit(build_model_state(config), converted)
        if not fit.ok:
            raise ConversionError(f'{method}: the converted checkpoint does not fill the model '
                                  f'of {config}: {fit.summary()}')
    if dst is not None:
        out = {'state_dict': converted,
               'meta': {'converted_from': method, 'source': osp.basename(str(src))}}
        tmp = f'{dst}.tmp{os.getpid()}'
        torch.save(out, tmp)
        os.replace(tmp, dst)  # never leave a half-written file under the final name
    return converted


__all__ = ['CONVERTERS', 'ConversionError', 'register_converter', 'get_converter',
           'detect_method', 'convert_state_dict', 'convert_checkpoint']
