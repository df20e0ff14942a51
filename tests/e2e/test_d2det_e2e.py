"""End to end: D2Det (instance variant, demo config, ResNet-18 from scratch) learns on shapes.

Trains ``configs/demo/d2det_r18_shapes.py`` (AdamW, lr 1e-3) once per module for ITERS
iterations, batch 2, on the first 4 training images at 128 px without flips
(``fit_subset_options``), and evaluates on those same images (``evaluate_on='train'``: the whole
two-stage pipeline -- RPN, discriminative RoI pooling, the box head without regression, jittered
dense regression with the mask overlap map, instance masks and mask-IoU, the refined-box
inference, paste and mask scores -- can fit data).

Measured after the run (segm mAP / mAP50, loss last 8 / first 8 iterations):
  seed 0, OMP_NUM_THREADS=2: 0.114 / 0.406, loss 5.93 -> 2.85 (0.48)
  seed 1, OMP_NUM_THREADS=1: 0.057 / 0.253, loss 5.88 -> 2.88 (0.49)
  (40 iterations with the demo config's 128 RoIs per image: 0.216 / 0.601, loss ratio 0.46)
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo', 'd2det_r18_shapes.py')
ITERS = 30
# An untrained model scores 0.0; the floors sit about 3x below the lowest measured values.
SEGM_AP_FLOOR = 0.02
SEGM_AP50_FLOOR = 0.08


@pytest.fixture(scope='module')
def d2det_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('d2det')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=128)
    # fewer RoIs than the demo config (CI time): 64 sampled per image, 100 test proposals
    opts.update({'model.train_cfg.rcnn.sampler.num': 64, 'model.test_cfg.rpn.max_per_img': 100})
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, evaluate_on='train',
                             batch_size=2, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'D2Det e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_d2det_loss_falls(d2det_run):
    losses = d2det_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.46-0.49
    assert mean(losses[-8:]) < 0.7 * mean(losses[:8]), losses


def test_d2det_segm_ap_above_floor(d2det_run):
    metrics = d2det_run['metrics']
    assert metrics['coco/segm_mAP'] > SEGM_AP_FLOOR, metrics
    assert metrics['coco/segm_mAP_50'] > SEGM_AP50_FLOOR, metrics
