"""End to end: PolarMask (demo config, half-width ResNet-18 from scratch) learns on the shapes set.

Trains ``configs/demo/polarmask_r18_shapes.py`` once per module (fixture) for 40 iterations,
batch 4, lr 0.01, on the first 4 training images at 160 px without flips (``fit_subset_options``:
every step sees the same 4 images, infinite sampler), and evaluates on those same images
(``evaluate_on='train'``: the suite checks that the whole pipeline -- polar-centre assignment,
ray regression with the polar IoU loss, polar centerness, inference and decoding
rays into star-shaped masks -- can fit data, not generalisation). On all 24 images at 256 px, 60
iterations reached only segm mAP50 ~0.04, a value too close to any usable floor to survive a
changed data order or thread count.

Measured segm mAP50 (segm mAP) after the run, seeds 0/1/2, with the official PolarMask targets,
losses and post-processing (largest-contour rays, +1 IoU, cv2 polygon fill):
  OMP_NUM_THREADS=1: 0.346 (0.227) / 0.632 (0.241) / 0.403 (0.151)
  OMP_NUM_THREADS=2: 0.354 (0.228) (seed 0)
(before the switch to the official rules: 0.485 / 0.488 / 0.352 with one thread, 0.462 / 0.448
/ 0.335 with two.)
Loss (mean of first / last 8 iterations) falls to 0.16-0.17 of its start (7.2-7.7 -> 1.1-1.3).
Cost: about 7 s CPU (user+sys) for training and evaluation with one thread.
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo', 'polarmask_r18_shapes.py')
ITERS = 40
# An untrained model scores segm mAP50 0.0 (class scores start at the 0.01 prior, below the 0.05
# test threshold, so nothing is detected); 0.1 needs decoded polar contours overlapping several
# shapes at IoU >= 0.5, and sits 3.4x below the lowest measured value (0.346, seed 0, one thread).
AP50_FLOOR = 0.1


@pytest.fixture(scope='module')
def polarmask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('polarmask')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=160)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, lr=0.01, evaluate_on='train',
                             batch_size=4, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'PolarMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_polarmask_loss_falls(polarmask_run):
    losses = polarmask_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.16-0.17 (last 8 / first 8 iterations)
    assert mean(losses[-8:]) < 0.4 * mean(losses[:8]), losses


def test_polarmask_segm_ap_above_floor(polarmask_run):
    assert polarmask_run['metrics']['coco/segm_mAP_50'] > AP50_FLOOR, polarmask_run['metrics']
