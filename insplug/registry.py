"""insplug's registry scope for MMDetection 3.x / MMEngine.

Every registry here is a child of mmdet's registry of the same kind, with scope ``insplug``:

* ``type='insplug.RefineMaskHead'`` works from a stock mmdet config (``default_scope='mmdet'``):
  mmengine imports ``insplug.registry`` by the scope name and finds this child;
* insplug configs (``default_scope='insplug'``) can use every mmdet type unprefixed, because a
  lookup that misses here goes on to the parent (mmdet) and then the root (mmengine).

Importing a registry lazily imports ``insplug.mmdet`` (the ``locations``), which registers all
insplug components and all of mmdet's modules.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

_LOCATIONS = ['insplug.mmdet']


def _child(parent: Registry) -> Registry:
    return Registry(parent.name, parent=parent, scope='insplug', locations=_LOCATIONS)


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
