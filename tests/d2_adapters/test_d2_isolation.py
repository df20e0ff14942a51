"""insplug keeps detectron2 optional: checks that run with or without detectron2 installed.

* no module of insplug outside ``insplug/detectron2/`` imports detectron2 or
  ``insplug.detectron2`` (read from the sources with ``ast``, so the check holds whatever is
  installed; mmdet's own optional ``d2_wrapper`` is not insplug's);
* ``import insplug.detectron2`` where detectron2 cannot be imported fails with an ImportError
  that says how to install it (simulated by an import hook that hides detectron2).
"""
import ast
import importlib
import os
import os.path as osp
import sys

import pytest

import insplug

PACKAGE = osp.dirname(osp.abspath(insplug.__file__))


def imported_names(path):
    """Module names imported by a source file (``import a.b`` -> 'a.b', ``from a import b``
    -> 'a', plus string arguments of ``import_module``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f'{node.module}.{alias.name}' for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'import_module'
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return names


def test_no_insplug_module_outside_the_adapter_imports_detectron2():
    offenders = []
    for root, _, files in os.walk(PACKAGE):
        if osp.join(PACKAGE, 'detectron2') in (root, osp.dirname(root)):
            continue
        for name in files:
            if name.endswith('.py'):
                path = osp.join(root, name)
                bad = [m for m in imported_names(path)
                       if m.split('.')[0] == 'detectron2' or m.startswith('insplug.detectron2')]
                offenders += [f'{osp.relpath(path, PACKAGE)}: {m}' for m in bad]
    assert not offenders, offenders
    # the scan sees imports at all (a scan that finds nothing would pass vacuously)
    assert 'torch' in imported_names(osp.join(PACKAGE, 'core', 'refinemask', 'boundary.py'))


class HideDetectron2:
    def find_spec(self, name, path=None, target=None):
        if name == 'detectron2' or name.startswith('detectron2.'):
            raise ModuleNotFoundError(f'No module named {name!r} (hidden)', name=name)
        return None


def test_missing_detectron2_gives_install_instructions():
    saved = {k: v for k, v in sys.modules.items()
             if k.split('.')[0] == 'detectron2' or k.startswith('insplug.detectron2')}
    for key in saved:
        del sys.modules[key]
    hook = HideDetectron2()
    sys.meta_path.insert(0, hook)
    try:
        with pytest.raises(ImportError) as info:
            importlib.import_module('insplug.detectron2')
    finally:
        sys.meta_path.remove(hook)
        for key in [k for k in sys.modules
                    if k.split('.')[0] == 'detectron2' or k.startswith('insplug.detectron2')]:
            del sys.modules[key]
        sys.modules.update(saved)
    message = str(info.value)
    assert 'pip wheel --no-build-isolation --no-deps' in message
    assert 'facebookresearch/detectron2' in message
