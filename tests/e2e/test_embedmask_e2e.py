"""End to end: EmbedMask (demo config, half-width ResNet-18 from scratch) learns on the shapes set.

Trains ``configs/demo/embedmask_r18_shapes.py`` once per module (fixture) for 40 iterations,
batch 4, lr 0.01, on the first 4 training images at 160 px without flips (``fit_subset_options``:
every step sees the same 4 images, infinite sampler), and evaluates on those same images
(``evaluate_on='train'``: the suite checks that the whole pipeline -- FCOS assignment, proposal
and pixel embeddings with learned margins, the mask loss, inference and mask pasting -- can fit
data, not generalisation). On all 24 images at 256 px, 60 iterations reached only segm mAP50
~0.01, a value too close to any usable floor to survive a changed data order or thread count.

Measured segm mAP50 (segm mAP) after the run, seeds 0/1/2, with the official defaults of the
released revision (D margins + margin_scales, first max-IoU sampling, whole-grid loss, log-prob
masks, FCOS-official head, bias lr x2 / no bias decay):
  OMP_NUM_THREADS=1: 0.651 (0.357) / 0.412 (0.252) / 0.372 (0.232)
  OMP_NUM_THREADS=2: 0.606 (0.302) / 0.427 (0.216) / 0.441 (0.245)
Loss (mean of first / last 8 iterations) falls to 0.43-0.49 of its start (3.5 -> 1.5-1.8).
(Before the switch to the released revision: 0.508-0.627 over the same runs.)
Cost: about 7 s CPU (user+sys) for training and evaluation with one thread.
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo', 'embedmask_r18_shapes.py')
ITERS = 40
# An untrained model scores segm mAP50 0.0 (class scores start at the 0.01 prior, below the 0.05
# test threshold, so nothing is detected); 0.15 needs embedding masks overlapping most shapes
# at IoU >= 0.5, and sits 2.5x below the lowest measured value (0.372, seed 2, one thread).
AP50_FLOOR = 0.15


@pytest.fixture(scope='module')
def embedmask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('embedmask')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=160)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, lr=0.01, evaluate_on='train',
                             batch_size=4, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'EmbedMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_embedmask_loss_falls(embedmask_run):
    losses = embedmask_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.43-0.49 (last 8 / first 8 iterations)
    assert mean(losses[-8:]) < 0.7 * mean(losses[:8]), losses


def test_embedmask_segm_ap_above_floor(embedmask_run):
    assert embedmask_run['metrics']['coco/segm_mAP_50'] > AP50_FLOOR, embedmask_run['metrics']
