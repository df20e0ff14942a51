"""Train / evaluate insplug's detectron2 models from yacs configs (configs/detectron2/*.yaml).

`python tools/d2_train_net.py --config-file CONFIG [--eval-only] [--num-gpus N] [KEY VALUE ...]`;
see :mod:`insplug.detectron2.train_net`. Needs detectron2 (README, "Detectron2").
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.detectron2.train_net import cli  # noqa: E402

if __name__ == '__main__':
    cli()
