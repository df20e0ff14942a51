"""`python tools/convert_checkpoint.py --help`: see :mod:`insplug.cli.convert`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.cli.convert import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
