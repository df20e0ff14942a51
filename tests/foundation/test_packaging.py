"""A pip-installed insplug works without the repository (issue 18, item 7).

The wheel built from this tree must carry the configs (``insplug::PATH``) and the console
scripts; ``pip install '.[mmdet]'`` must not try to build mmcv (no mmcv requirement), and
without mmcv ``import insplug`` must say which command installs it.
"""
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                    '--no-build-isolation', '-w', str(out), REPO], check=True,
                   capture_output=True, text=True)
    (path,) = [osp.join(out, f) for f in os.listdir(out) if f.endswith('.whl')]
    return path


def test_wheel_has_every_config_and_the_console_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n.split('.mim/configs/', 1)[1] for n in names if '.mim/configs/' in n}
    in_repo = {osp.relpath(osp.join(d, f), osp.join(REPO, 'configs'))
               for d, _, files in os.walk(osp.join(REPO, 'configs')) for f in files
               if f.endswith(('.py', '.yaml'))}
    assert in_repo and packaged == in_repo
    entry_points = zipfile.ZipFile(wheel).read(
        [n for n in names if n.endswith('entry_points.txt')][0]).decode()
    for script in ('insplug-train', 'insplug-test', 'insplug-benchmark', 'insplug-convert',
                   'insplug-install-mmcv'):
        assert f'{script} = insplug.cli.' in entry_points
    metadata = zipfile.ZipFile(wheel).read(
        [n for n in names if n.endswith('METADATA')][0]).decode()
    requires = [line for line in metadata.splitlines() if line.startswith('Requires-Dist')]
    assert not any('mmcv' in line for line in requires), requires  # pip never compiles mmcv


def test_installed_wheel_resolves_packaged_configs_outside_the_repo(wheel, tmp_path):
    target = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                    str(target), wheel], check=True, capture_output=True)
    user_cfg = tmp_path / 'my_config.py'
    user_cfg.write_text("_base_ = 'insplug::demo/refinemask_r18_shapes.py'\n"
                        "train_cfg = dict(max_epochs=1)\n")
    script = (
        'import insplug, os.path as osp\n'
        'from mmengine.config import Config\n'
        'from insplug._mmengine_configs import resolve_config_path\n'
        'assert insplug.__file__.startswith(%r), insplug.__file__\n'
        'cfg = Config.fromfile(resolve_config_path("insplug::refinemask_r50.py"))\n'
        'print(cfg.model.roi_head.type)\n'
        'cfg = Config.fromfile(%r)\n'
        'print(cfg.model.roi_head.mask_head.type, cfg.train_cfg.max_epochs)\n'
    ) % (str(target), str(user_cfg))
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['RefineRoIHead', 'RefineMaskHead', '1']


def test_without_mmcv_import_names_the_install_command():
    script = ('import sys, warnings\n'
              'sys.modules["mmcv.ops"] = None  # as if mmcv with ops were absent\n'
              'with warnings.catch_warnings(record=True) as caught:\n'
              '    warnings.simplefilter("always")\n'
              '    import insplug\n'
              'print([str(w.message) for w in caught if "insplug" in str(w.message)][0])\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'insplug-install-mmcv' in result.stdout and 'mmcv 2.1.0' in result.stdout
