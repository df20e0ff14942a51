"""`python tools/leaderboard.py --help`: see :mod:`insplug.cli.leaderboard`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.cli.leaderboard import main  # noqa: E402

if __name__ == '__main__':
    main()
