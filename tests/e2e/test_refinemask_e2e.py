"""End to end: RefineMask (demo config, ResNet-18 from scratch) learns on the shapes set.

Trains ``configs/demo/refinemask_r18_shapes.py`` (its AdamW, lr 1e-3) once per module (fixture)
for 40 iterations, batch 2, on the first 4 training images at 128 px without flips
(``fit_subset_options``: the same 4 images throughout, infinite sampler), and evaluates on
those same images (``evaluate_on='train'``: the suite checks that the whole two-stage pipeline --
RPN, RoI heads, the SFM refinement stages with the semantic branch, the boundary-aware loss,
inference and pasting -- can fit data, not generalisation). On all 24 images at 256 px, 60
iterations reached only segm mAP 0.006 / mAP50 0.022, too close to any usable floor to survive a
changed data order or thread count. 128 px and batch 2 keep this two-stage model inside the
suite's time budget (about 26 s CPU, user+sys, with one thread); 20 iterations at batch 4 (20 s
CPU) were seed- and thread-sensitive (segm mAP 0.023-0.197).

Measured segm mAP (mAP50) after the run, seeds 0/1/2:
  OMP_NUM_THREADS=1: 0.162 (0.467) / 0.276 (0.540) / 0.222 (0.495)
  OMP_NUM_THREADS=2: 0.232 (0.491) / 0.222 (0.534) / 0.221 (0.558)
Loss (mean of first / last 8 iterations) falls to 0.12-0.34 of its start (11-30 -> 3.6-3.7).
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo',
                  'refinemask_r18_shapes.py')
ITERS = 40
# An untrained model scores 0.0 (random boxes, classes and masks). The floors need refined masks
# overlapping several shapes well, and sit about 3x below the lowest measured values
# (mAP 0.162 and mAP50 0.467, both seed 0, one thread).
SEGM_AP_FLOOR = 0.05
SEGM_AP50_FLOOR = 0.15


@pytest.fixture(scope='module')
def refinemask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('refinemask')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=128)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, evaluate_on='train',
                             batch_size=2, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'RefineMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_refinemask_loss_falls(refinemask_run):
    losses = refinemask_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.12-0.34 (last 8 / first 8 iterations)
    assert mean(losses[-8:]) < 0.6 * mean(losses[:8]), losses


def test_refinemask_segm_ap_above_floor(refinemask_run):
    metrics = refinemask_run['metrics']
    assert metrics['coco/segm_mAP'] > SEGM_AP_FLOOR, metrics
    assert metrics['coco/segm_mAP_50'] > SEGM_AP50_FLOOR, metrics
