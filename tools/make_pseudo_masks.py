"""`python tools/make_pseudo_masks.py --help`: see :mod:`insplug.cli.pseudo_masks`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.cli.pseudo_masks import main  # noqa: E402

if __name__ == '__main__':
    main()
