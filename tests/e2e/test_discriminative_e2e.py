"""End to end: the discriminative-loss demo config fits a few shapes images.

Trained from scratch for 150 CPU iterations at the config's Adam lr 3e-3 on the first 4 training
images at 128 px without flips, batch 4, and evaluated on those same images
(``evaluate_on='train'``, subset helper shared with ``test_spatialembeddings_e2e``): a fitting
check of the whole pipeline (embeddings, discriminative + semantic losses, mean-shift, majority
vote labels, COCO output), not generalisation. On all 24 images the suite's budget is too small
(segm AP 0.000 after 200 iterations). Checks:

* the total loss falls below 0.1 of its start (measured 20.0 -> 0.34 with seed 0 under the
  release's normalisation, the default since the official-parity change; 9.4 -> 0.27 under the
  paper's: at the start all embeddings nearly coincide, so each pair pushes (2 delta_d)^2 = 9,
  summed over unordered pairs / (C - 1) by the release, i.e. C/2 times the paper's mean);
* segm AP50 > 0.15 (the floor: the model after one step at lr 1e-12, i.e. untrained, scores
  0.000 with seeds 0 and 1; 0.15 needs masks matching several shapes at IoU >= 0.5 with the
  right class, about 0.6 of the weakest trained seed's value). Measured with
  ``OMP_NUM_THREADS=1``, seeds 0 / 1 / 2: segm AP50 0.467 / 0.282 / 0.635, segm mAP
  0.328 / 0.186 / 0.433 (seeds 3-5: AP50 0.26-0.52), under the paper's normalisation; under
  the release's (default) seed 0 measures AP50 0.552, mAP 0.361. The remaining errors are wrong
  majority-vote classes of small shapes and large shapes split in several clusters. The test
  uses seed 0;
* the semantic branch learned where the objects are: the mean foreground probability
  (1 - p_background) inside ground-truth instances exceeds the background's by more than 0.1.
"""
import os.path as osp

import torch
from e2e_utils import fit_subset_options, mean, train_and_evaluate
from test_spatialembeddings_e2e import foreground_contrast

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo',
                  'discriminative_erfnet_shapes.py')


def test_discriminative_fits_shapes(demo_data, tmp_path):
    data, opts = fit_subset_options(CONFIG, demo_data, tmp_path, size=128)
    out = train_and_evaluate(CONFIG, data, tmp_path, max_iters=150, evaluate_on='train',
                             batch_size=4, cfg_options=opts, seed=0)
    losses, metrics = out['losses'], out['metrics']
    print(f'discriminative e2e: loss {mean(losses[:5]):.3f} -> {mean(losses[-5:]):.3f}, '
          f'metrics {metrics}')
    assert len(losses) == 150
    assert mean(losses[-10:]) < 0.1 * mean(losses[:5]), (losses[:5], losses[-10:])
    assert metrics['coco/segm_mAP_50'] > 0.15, metrics
    contrast = foreground_contrast(out['runner'],
                                   lambda o: 1 - torch.softmax(o[1], 1)[:, 0])
    assert contrast > 0.1, contrast
