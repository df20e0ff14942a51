"""`python tools/train.py --help`: see :mod:`insplug.cli.train`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.cli.train import main  # noqa: E402

if __name__ == '__main__':
    main()
