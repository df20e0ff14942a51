"""End to end: the SpatialEmbeddings demo config trains on the bundled shapes set and learns.

Trained from scratch (no pretrained weights) for 200 CPU iterations (about 25 s), evaluated on
the training images (``evaluate_on='train'``): a fitting check, not generalisation. Checks:

* the total loss falls below 0.6 of its start (measured 2.68 -> 1.2);
* the seed maps learned where the objects are: on training images the mean best-class seed
  inside ground-truth instances exceeds the background's by more than 0.1 (an untrained
  model's seeds are about 0.5 everywhere: difference about 0);
* CocoMetric evaluates the detector (segm metrics present).

Not asserted: a segm AP floor. At this budget the greedy seed clustering finds few instances
and the measured segm AP50 varies between 0.00 and 0.02 from run to run (bottom-up embeddings
need far longer training than top-down heads; the official schedule is 200 epochs).
"""
import os.path as osp

import torch
from e2e_utils import mean, train_and_evaluate
from mmengine.dataset import pseudo_collate

from insplug.mmdet.bottomup.heads import batch_gt

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo',
                  'spatialembeddings_erfnet_shapes.py')


def foreground_contrast(runner, score_fn):
    """Mean of ``score_fn(outputs)`` (B, H, W) inside ground-truth instances minus outside, on
    the first four training images (train pipeline), in eval mode."""
    model = runner.model.eval()
    dataset = runner.train_dataloader.dataset
    data = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), False)
    with torch.no_grad():
        outputs = model.head(model.extract_feat(data['inputs']))
    score = score_fn(outputs)
    masks, _, img = batch_gt(data['data_samples'], score.shape[-2:], score.device)
    inside = torch.zeros_like(score, dtype=torch.bool)
    inside.index_put_((img,), masks, accumulate=True)
    return (score[inside].mean() - score[~inside].mean()).item()


def test_spatialembeddings_learns_on_shapes(demo_data, tmp_path):
    out = train_and_evaluate(CONFIG, demo_data, tmp_path, max_iters=200, lr=2e-3,
                             evaluate_on='train', batch_size=4)
    losses = out['losses']
    assert len(losses) == 200
    assert mean(losses[-20:]) < 0.6 * mean(losses[:10]), (losses[:10], losses[-20:])
    assert 'coco/segm_mAP_50' in out['metrics'], out['metrics']
    contrast = foreground_contrast(out['runner'],
                                   lambda o: torch.sigmoid(o[2]).max(1).values)
    assert contrast > 0.1, contrast
