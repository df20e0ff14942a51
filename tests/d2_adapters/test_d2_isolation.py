"""insplug keeps detectron2 optional: checks that run with or without detectron2 installed.

* no module of insplug outside ``insplug/detectron2/`` imports detectron2 or
  ``insplug.detectron2`` (read from the sources with ``ast``, so the check holds whatever is
  installed; mmdet's own optional ``d2_wrapper`` is not insplug's);
* ``import insplug.detectron2`` where detectron2 cannot be imported fails with an ImportError
  that says how to install it (simulated by an import hook that hides detectron2);
* ``import insplug`` (which registers the mmdet components) loads no detectron2 module;
* where detectron2 is installed: no name insplug registers in a detectron2 registry is one that
  AdelaiDet, centermask2 or SparseInst registers (their registrations are read from their sources
  by ``tools/official_parity/list_official_registrations.py`` into
  ``tests/fixtures/official/registrations/``), and in one process each project's names can be
  registered before or after ``import insplug.detectron2`` (fvcore refuses a second entry under
  one name, so a collision fails there), with every insplug model still buildable by name.
"""
import ast
import importlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
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


def run_python(code):
    """Run ``code`` in a fresh interpreter (clean ``sys.modules`` and registries)."""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=osp.dirname(PACKAGE), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_insplug_loads_no_detectron2_module():
    # mmdet itself imports detectron2 when it is installed (its ``d2_wrapper`` detector), so
    # what mmdet loaded is taken first; ``import insplug`` must load nothing more of it
    out = run_python(
        'import importlib.util, sys\n'
        'if importlib.util.find_spec("mmdet"): import mmdet.models\n'
        'def d2(): return {k for k in sys.modules if k.split(".")[0] == "detectron2" '
        'or k.startswith("insplug.detectron2")}\n'
        'before = d2()\n'
        'import insplug\n'
        'print(sorted(d2() - before))\n'
        'print("insplug.mmdet" in sys.modules)')
    loaded, mmdet_registered = out.split('\n')[:2]
    assert loaded == '[]'
    # the check is not vacuous: importing insplug did register its mmdet components
    assert mmdet_registered == 'True' or importlib.util.find_spec('mmdet') is None


OFFICIAL = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'fixtures', 'official',
                    'registrations', 'official_registrations.json')

REGISTER_OFFICIAL = """
import json, sys
import detectron2.modeling as m
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
registries = dict(BACKBONE_REGISTRY=m.BACKBONE_REGISTRY, META_ARCH_REGISTRY=m.META_ARCH_REGISTRY,
                  PROPOSAL_GENERATOR_REGISTRY=PROPOSAL_GENERATOR_REGISTRY,
                  ROI_HEADS_REGISTRY=m.ROI_HEADS_REGISTRY,
                  ROI_MASK_HEAD_REGISTRY=m.ROI_MASK_HEAD_REGISTRY,
                  ROI_BOX_HEAD_REGISTRY=m.ROI_BOX_HEAD_REGISTRY,
                  ROI_KEYPOINT_HEAD_REGISTRY=m.ROI_KEYPOINT_HEAD_REGISTRY)
def register_official(entries):
    n = 0
    for registry, name in entries:
        if registry not in registries:  # a project's own registry cannot collide with ours
            continue
        existing = registries[registry].get(name) if name in registries[registry] else None
        if existing is not None and existing.__module__.startswith('detectron2.'):
            continue  # a detectron2 name: the project re-registers it in its own registry copy
        registries[registry]._do_register(name, type(name, (), {'official': True}))
        n += 1
    return n
"""


@pytest.mark.parametrize('order', ['official_first', 'insplug_first'])
def test_official_projects_names_do_not_collide(order):
    pytest.importorskip('detectron2', reason='needs detectron2 (see README, "Detectron2")')
    with open(OFFICIAL) as f:
        official = json.load(f)
    assert {'adelaidet', 'centermask2', 'sparseinst'} <= set(official)
    # one interpreter; each project's names go in on their own (AdelaiDet and centermask2 both
    # register FCOS, so they cannot share a process with each other), then are taken out again
    code = REGISTER_OFFICIAL + f"official = {json.dumps(official)}\n"
    if order == 'insplug_first':
        code += 'import insplug.detectron2\n'
    code += (
        'counts = {}\n'
        'for project, record in official.items():\n'
        '    counts[project] = register_official(record["registrations"])\n'
        f'    {"import insplug.detectron2" if order == "official_first" else "pass"}\n'
        '    for r in registries.values():  # take the stand-ins out again\n'
        '        for name in [n for n, o in r._obj_map.items() if getattr(o, "official", 0)]:\n'
        '            del r._obj_map[name]\n'
        'ours = sorted((key, name) for key, reg in registries.items()\n'
        '              for name, obj in reg._obj_map.items()\n'
        '              if getattr(obj, "__module__", "").startswith("insplug."))\n'
        'print(json.dumps(counts)); print(json.dumps(ours))\n')
    out = run_python(code).strip().split('\n')
    counts, ours = json.loads(out[-2]), [tuple(e) for e in json.loads(out[-1])]
    # the official names did go in (SparseInst's own registries hold most of its names)
    assert counts['adelaidet'] >= 15 and counts['centermask2'] >= 8 and \
        counts['sparseinst'] >= 4, counts
    assert len(ours) >= 5, ours  # insplug's entries are all there next to them
    for project, record in official.items():
        assert not {name for _, name in ours} & {name for _, name in record['registrations']}, \
            project
