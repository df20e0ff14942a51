"""insplug: instance-segmentation methods as MMDetection 3.x and Detectron2 components.

``import insplug`` registers every component in insplug's mmdet scope when mmdet is installed
(so ``custom_imports=dict(imports=['insplug'])`` works). The detectron2 adapters are registered
by ``import insplug.detectron2``. ``insplug.core`` is framework-free PyTorch.
"""
import importlib.util
import warnings

from .version import __version__


def _mmcv_with_ops():
    try:
        import mmcv.ops  # noqa: F401
    except ImportError:
        return False
    return True


if importlib.util.find_spec('mmdet') is not None:
    if _mmcv_with_ops():
        from . import _mmengine_configs  # noqa: F401  (`insplug::PATH` configs)
        from . import mmdet as _mmdet_adapters  # noqa: F401  (registers components)
    else:
        from .cli.install_mmcv import INSTALL_HINT
        warnings.warn('insplug: mmdet is installed but full mmcv 2.1.0 (with compiled ops) is '
                      'not, so insplug\'s mmdet components are not registered. pip cannot '
                      f'install it here; run: {INSTALL_HINT}')

__all__ = ['__version__']
