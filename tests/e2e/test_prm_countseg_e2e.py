"""End to end: PRM and CountSeg (demo configs) train on the shapes set from IMAGE-LEVEL LABELS /
COUNTS only (``ImageLevelLabels`` drops masks and boxes; tests/mmdet/test_weak_image_labels.py
proves no mask reaches the loss) and are evaluated with mask AP by CocoMetric on full masks.

Each trains once (fixture) for 40 iterations, batch 4, lr 0.01, on the first 4 training images at
128 px without flips (``fit_subset_options``), and is evaluated on those images.

What is asserted, and why no mask-AP floor: the image-level task is learnt (loss falls; the
classes with a positive peak-stimulated score are the image's classes; CountSeg's rounded
counts match), and the whole path -- peak finding, batched peak back-propagation, retrieval among
colour-region proposals, NMS, CocoMetric -- runs. Mask AP is measured but NOT floored: with a
trunk trained from scratch for seconds, the peaks and peak response maps do not localise the
shapes (measured PRM mass inside objects ~0 for most peaks), and segm mAP50 after training
(PRM 60 iterations, seeds 0/1/2: 0.017 / 0.034 / 0.0; CountSeg seeds 0/1: 0.0 / 0.0) is not
above an untrained model's (0.065, chance hits of colour-region proposals). A floor would
assert chance. Both methods need ImageNet-pretrained trunks (as released) to segment.
Cost: about 8-10 s CPU per method with one thread.
"""
import os.path as osp

import pytest
import torch
from e2e_utils import fit_subset_options, mean, train_and_evaluate

from mmengine.dataset import pseudo_collate

from insplug.core.prm import peak_stimulation

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo')
ITERS = 40


def _run(name, demo_data, tmp_path_factory):
    config = osp.join(CONFIGS, name)
    work = tmp_path_factory.mktemp(name.split('_')[0])
    data, opts = fit_subset_options(config, demo_data, work, num_images=4, size=128)
    opts['train_cfg.val_begin'] = 10 ** 9  # evaluate once (after training), not twice
    out = train_and_evaluate(config, data, work, max_iters=ITERS, lr=0.01, evaluate_on='train',
                             batch_size=4, cfg_options=opts)
    runner = out['runner']
    model = runner.model.eval()
    dataset = runner.train_dataloader.dataset
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
    out['inputs'], out['samples'] = data['inputs'], data['data_samples']
    print(f'{name}: loss {mean(out["losses"][:8]):.3f} -> {mean(out["losses"][-8:]):.3f}, '
          f'metrics {out["metrics"]}')
    return out


@pytest.fixture(scope='module')
def prm_run(demo_data, tmp_path_factory):
    return _run('prm_r18_shapes.py', demo_data, tmp_path_factory)


@pytest.fixture(scope='module')
def countseg_run(demo_data, tmp_path_factory):
    return _run('countseg_r18_shapes.py', demo_data, tmp_path_factory)


def _field(samples, key):
    return torch.stack([torch.as_tensor(s.metainfo[key]) for s in samples])


@pytest.mark.parametrize('run', ['prm_run', 'countseg_run'])
def test_loss_falls_and_mask_ap_is_evaluated(run, request):
    out = request.getfixturevalue(run)
    assert len(out['losses']) == ITERS
    # measured last-8 / first-8 ratio: PRM ~0.01, CountSeg ~0.25
    assert mean(out['losses'][-8:]) < 0.5 * mean(out['losses'][:8]), out['losses']
    ap = out['metrics']['coco/segm_mAP_50']
    assert 0.0 <= ap <= 1.0, out['metrics']


def test_prm_learns_image_labels(prm_run):
    model = prm_run['runner'].model
    cfg = model.test_cfg
    with torch.no_grad():
        crm = model.class_maps(prm_run['inputs'], cfg['sub_pixel_locating_factor'])
        scores, _, _ = peak_stimulation(crm, cfg['win_size'], cfg['filter_type'])
    labels = _field(prm_run['samples'], 'gt_image_labels') > 0
    # an untrained model gets about half of the 20 (image, class) decisions right
    assert ((scores > 0) == labels).float().mean() >= 0.9, (scores, labels)


def test_countseg_learns_counts(countseg_run):
    model = countseg_run['runner'].model
    counts = _field(countseg_run['samples'], 'gt_image_counts').float()
    pred = model.predict_counts(countseg_run['inputs'])
    # classes present / absent decided right, counts within one on average
    assert ((pred > 0) == (counts > 0)).float().mean() >= 0.8, (pred, counts)
    assert (pred - counts).abs().mean() <= 1.0, (pred, counts)
