"""RefineMask end to end on the demo shapes: the demo config trains, its loss falls and its
masks score.

Evaluated on the training images (``evaluate_on='train'``): 60 CPU iterations of a two-stage
detector trained from scratch measure the start of fitting, not generalisation. An untrained
model scores 0.0 (random boxes, classes and masks); this run measured segm AP 0.006 and
AP50 0.022 (AP_l 0.20) with the demo config's AdamW, so the floors below (about a quarter of
those) show learning while leaving margin for thread-count and platform noise. The loss falls
about tenfold (39 -> 3.8 averaged over the first / last 8 iterations).
"""
import os.path as osp

from e2e_utils import mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo',
                  'refinemask_r18_shapes.py')
SEGM_AP_FLOOR = 0.001
SEGM_AP50_FLOOR = 0.005


def test_refinemask_learns_on_shapes(demo_data, tmp_path):
    out = train_and_evaluate(CONFIG, demo_data, tmp_path, max_iters=60, evaluate_on='train',
                             batch_size=4)
    losses = out['losses']
    assert len(losses) == 60
    assert mean(losses[-8:]) < 0.3 * mean(losses[:8]), losses
    assert out['metrics']['coco/segm_mAP'] > SEGM_AP_FLOOR, out['metrics']
    assert out['metrics']['coco/segm_mAP_50'] > SEGM_AP50_FLOOR, out['metrics']
