"""MMDetection 3.x adapters: register insplug's components in the ``insplug`` scope.

The adapters only wire framework-free code from :mod:`insplug.core` into mmdet's interfaces.
Importing this package registers all of mmdet's own modules (so configs with
``default_scope='insplug'`` can name any mmdet type) and then every module below it: each
method's adapters live in their own file or sub-package here and are found automatically.
"""
import importlib
import pkgutil

from mmdet.utils import register_all_modules as _register_mmdet

_register_mmdet(init_default_scope=False)

for _module in pkgutil.walk_packages(__path__, prefix=__name__ + '.'):
    importlib.import_module(_module.name)
