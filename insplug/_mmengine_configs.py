"""Let mmengine resolve ``insplug::PATH`` configs (``_base_ = 'insplug::demo/...'``).

insplug ships its configs inside the package (``insplug/.mim/configs``, the layout mmdet uses
for ``mmdet::``); mmengine only follows the ``PACKAGE::`` prefix for packages it lists, so
insplug adds itself to that list. :func:`resolve_config_path` also accepts a top-level file
(``insplug::refinemask_r50.py``), which mmengine's own pattern (``pkg::folder/file``) does not.
"""
import os.path as osp

from mmengine.config import utils as _config_utils

_config_utils.MODULE2PACKAGE.setdefault('insplug', 'insplug')

CONFIG_ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def resolve_config_path(path):
    """``insplug::X`` -> the packaged config file X; any other path is returned unchanged."""
    if not path.startswith('insplug::'):
        return path
    resolved = osp.join(CONFIG_ROOT, path[len('insplug::'):])
    if not osp.isfile(resolved):
        raise FileNotFoundError(f'{path}: no such packaged config ({resolved})')
    return resolved
