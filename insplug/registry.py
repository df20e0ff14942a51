"""insplug's registry scope for MMDetection 3.x / MMEngine.

Every registry here is a child of mmdet's registry of the same kind, with scope ``insplug``:

* ``type='insplug.RefineMaskHead'`` works from a stock mmdet config (``default_scope='mmdet'``):
  mmengine imports ``insplug.registry`` by the scope name and finds this child;
* insplug configs (``default_scope='insplug'``) can use every mmdet type unprefixed, because a
  lookup that misses here goes on to the parent (mmdet) and then the root (mmengine).

Importing a registry lazily imports ``insplug.mmdet`` (the ``locations``), which registers all
insplug components and all of mmdet's modules.
"""
import difflib
import functools
import re

from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

_LOCATIONS = ['insplug.mmdet']
_UNKNOWN_TYPE = re.compile(r"`?(\S+?)`? is not in the (?:(\S+)::)?(\S+) registry")
_BY_NAME = {}


def _registry_chain(registry):
    while registry is not None:
        yield registry
        registry = registry.parent


def explain_unknown_type(error):
    """Return ``error``'s message extended with insplug's view of an unknown ``type``.

    mmengine reports an unknown type as "X is not in the S::R registry". This adds which
    registries were searched, close matches (with their scope prefix), and the names insplug
    registers in that registry, so the fix is visible. Returns None for other errors.
    """
    text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    match = _UNKNOWN_TYPE.search(text)
    if match is None or match.group(3) not in _BY_NAME:
        return None
    wanted = match.group(1).split('.')[-1]
    ours = _BY_NAME[match.group(3)]
    ours.import_from_location()
    candidates = {}
    for registry in _registry_chain(ours):
        for name in registry.module_dict:
            candidates.setdefault(name, registry.scope)
    close = difflib.get_close_matches(wanted, list(candidates), n=5, cutoff=0.6)
    suggestions = ', '.join(f"'{candidates[n]}.{n}'" for n in close) or 'none'
    insplug_names = ', '.join(sorted(ours.module_dict)) or '(none)'
    return (f'{text}\n[insplug] type {match.group(1)!r} is not registered in insplug\'s '
            f'{match.group(3)!r} registry, nor in its parents (mmdet, mmengine). '
            f'Close matches: {suggestions}. insplug registers here: {insplug_names}. '
            "From a config with another default scope, write type='insplug.<Name>' or add "
            "custom_imports=dict(imports=['insplug']).")


class UnknownTypeError(KeyError):
    """KeyError for an unknown registry ``type``, printed as plain text (not repr)."""

    def __str__(self):
        return str(self.args[0])


def _explaining(build_func):
    @functools.wraps(build_func)
    def build(cfg, *args, **kwargs):
        try:
            return build_func(cfg, *args, **kwargs)
        except KeyError as error:
            message = explain_unknown_type(error)
            if message is None:
                raise
            raise UnknownTypeError(message) from error
    return build


def _child(parent: Registry) -> Registry:
    registry = Registry(parent.name, parent=parent, scope='insplug', locations=_LOCATIONS,
                        build_func=_explaining(parent.build_func))
    _BY_NAME[parent.name] = registry
    return registry


RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS)
DATASETS = _child(mmdet_registry.DATASETS)
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODELS = _child(mmdet_registry.MODELS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)
