"""Install full mmcv 2.1.0 (compiled ops) into this Python: ``insplug-install-mmcv``.

pip cannot install it as a plain requirement here: PyPI has no mmcv 2.1.0 wheel for torch 2.14,
and its source build hard-codes ``-std=c++17``, which torch 2.14's headers reject. So insplug's
``[mmdet]`` extra installs mmengine and mmdet only, and this command installs mmcv:

    insplug-install-mmcv [--wheels DIR]

It installs from a prebuilt ``mmcv-2.1.0-*.whl`` in DIR (default ``$SHARED_WHEELS`` or
``../shared/wheels``) when there is one; otherwise it says so and compiles mmcv from the
registry's source with ``-std=c++20`` (about 12 minutes on 2 cores), keeping the wheel.
The steps are in ``insplug/scripts/install_mmcv.sh`` (also used by ``make``).
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'install_mmcv.sh')
INSTALL_HINT = ('insplug-install-mmcv  (or: bash insplug/scripts/install_mmcv.sh PYTHON, '
                'or make install in a clone)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--wheels', default=os.environ.get('SHARED_WHEELS', '../shared/wheels'),
                        help='folder with a prebuilt mmcv-2.1.0 wheel (default: %(default)s)')
    args = parser.parse_args(argv)
    env = dict(os.environ, SHARED_WHEELS=args.wheels)
    return subprocess.call(['bash', SCRIPT, sys.executable], env=env)


if __name__ == '__main__':
    sys.exit(main())
