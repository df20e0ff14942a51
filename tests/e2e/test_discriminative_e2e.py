"""End to end: the discriminative-loss demo config trains on the bundled shapes set and learns.

Trained from scratch for 200 CPU iterations (about 30 s), evaluated on the training images
(``evaluate_on='train'``): a fitting check, not generalisation. Checks:

* the total loss falls below half its start (measured about 10 -> 2.3; at the start all
  embeddings coincide, so the push term is (2 delta_d)^2 = 9);
* the semantic branch learned where the objects are: on training images the mean foreground
  probability (1 - p_background) inside ground-truth instances exceeds the background's by more
  than 0.1;
* CocoMetric evaluates the detector (segm metrics present).

Not asserted: a segm AP floor. At this budget mean-shift on the embeddings matches only a few
instances and the measured segm AP is 0.000 (bbox AR@100 about 0.007).
"""
import os.path as osp

import torch
from e2e_utils import mean, train_and_evaluate
from test_spatialembeddings_e2e import foreground_contrast

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo',
                  'discriminative_erfnet_shapes.py')


def test_discriminative_learns_on_shapes(demo_data, tmp_path):
    out = train_and_evaluate(CONFIG, demo_data, tmp_path, max_iters=200, lr=1e-3,
                             evaluate_on='train', batch_size=4)
    losses = out['losses']
    assert len(losses) == 200
    assert mean(losses[-20:]) < 0.5 * mean(losses[:10]), (losses[:10], losses[-20:])
    assert 'coco/segm_mAP' in out['metrics'], out['metrics']
    contrast = foreground_contrast(out['runner'],
                                   lambda o: 1 - torch.softmax(o[1], 1)[:, 0])
    assert contrast > 0.1, contrast
