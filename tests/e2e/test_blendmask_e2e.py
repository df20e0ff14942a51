"""End to end: BlendMask (demo config, ResNet-18 from scratch) learns on the shapes set.

Trains ``configs/demo/blendmask_r18_shapes.py`` once per module (fixture) for 40 iterations,
batch 4, on the first 8 training images at 160 px without flips, and evaluates on those same
images (``evaluate_on='train'``: the suite checks that the whole pipeline -- FCOS assignment,
top-layer attentions, bottom bases, blender, mask and semantic losses, inference and mask
pasting -- can fit data, not generalisation). The subset and size keep the run within the
suite's time budget; on all 24 images at 256 px the same 40 iterations reach only segm mAP50
~0.05.
"""

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate
# the subset/resize helper shared by the issue-4 e2e tests (candidate for tests/e2e_utils.py)
from test_yolact_protonet_e2e import BLENDMASK

ITERS = 40


@pytest.fixture(scope='module')
def blendmask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('blendmask')
    data, opts = fit_subset_options(BLENDMASK, demo_data, work, num_images=8, size=160)
    out = train_and_evaluate(BLENDMASK, data, work, max_iters=ITERS, lr=0.01,
                             evaluate_on='train', batch_size=4, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'BlendMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_blendmask_loss_falls(blendmask_run):
    losses = blendmask_run['losses']
    assert len(losses) == ITERS
    assert mean(losses[-8:]) < 0.75 * mean(losses[:8]), losses


def test_blendmask_segm_ap_above_floor(blendmask_run):
    # an untrained model has segm mAP50 0 (no detection clears score_thr); measured 0.16-0.25
    # over seeds 0-1 (0.25 with the suite's seed 0), so 0.05 shows the blender's masks overlap
    # the shapes at IoU >= 0.5, not just the boxes, with a margin for platform noise
    assert blendmask_run['metrics']['coco/segm_mAP_50'] > 0.05, blendmask_run['metrics']
