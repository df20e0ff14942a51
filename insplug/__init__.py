"""insplug: instance-segmentation methods as MMDetection 3.x and Detectron2 components.

``import insplug`` registers every component in insplug's mmdet scope when mmdet is installed
(so ``custom_imports=dict(imports=['insplug'])`` works). The detectron2 adapters are registered
by ``import insplug.detectron2``. ``insplug.core`` is framework-free PyTorch.
"""
import importlib.util

from .version import __version__

if importlib.util.find_spec('mmdet') is not None:
    from . import mmdet as _mmdet_adapters  # noqa: F401  (registers components)

__all__ = ['__version__']
