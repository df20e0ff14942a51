"""End to end: PRM and CountSeg (demo configs) train on the shapes set from IMAGE-LEVEL LABELS /
COUNTS only (``ImageLevelLabels`` drops masks and boxes; tests/mmdet/test_weak_image_labels.py
proves no mask reaches the loss) and are evaluated with mask AP by CocoMetric on full masks.

Each trains once (fixture) for 40 iterations, batch 4, lr 0.01, on the first 4 training images at
128 px without flips (``fit_subset_options``), and is evaluated on those images.

What is asserted, and why no mask-AP floor on the learnt pipeline: the image-level task is learnt
(loss falls; the classes with a positive peak-stimulated score are the image's classes;
CountSeg's rounded counts match), the whole path -- peak finding, batched peak
back-propagation, retrieval among colour-region proposals, NMS, CocoMetric -- runs, and the
instance retrieval works when the peaks are right (``test_oracle_peaks_retrieve_objects``).
Segm AP50 of the full pipeline is measured but NOT floored; it is at chance:

=====================================  ===============================================
PRM, these 4 images, 40 iterations     seeds 0 / 1: 0.017 / 0.034; untrained (lr 0) 0.067 / 0.0
CountSeg, same                         seeds 0 / 1: 0.0 / 0.0;     untrained 0.0 / 0.045
PRM, 24 train -> 12 val images         40 iterations: 0.018; untrained 0.003
=====================================  ===============================================

Diagnosis (scripts under /tmp during the measurement, 128 px):
- proposals are good: a ColourRegionProposals mask at IoU >= 0.5 exists for 16/17 objects of
  these images and 33/34 val objects (27/34 within the demo's size limits / count);
- the retrieval is good given peaks: one peak placed inside each object (its class) retrieves
  it at mask IoU >= 0.5 for PRM 9/17 and 7/17 (seeds 0/1; untrained 8/17), CountSeg 8/17 and
  8/17 (untrained 8/17); controls:
  uniform peak response maps 2/17, maps rotated by 180 degrees 1/17 (the test's floor, 5/17,
  lies between);
- the PEAKS are the failure: fitted to these 4 images (100 iterations) only 8 % of the kept
  peaks lie inside an object of their class (21 % inside any object, about the objects' area
  share), 3/17 objects get a peak of their class; on val 2 % / 18 % (untrained 2-4 % /
  12-21 %). A from-scratch trunk must learn to
  recognise the five shapes (random colours, textured backgrounds) from image labels alone,
  which CI-sized runs do not reach: val image-label accuracy (untrained ~0.5) 0.48 after 200
  SGD iterations on 24 images, 0.59 after 200 Adam iterations on 200 images, 0.62 after 500
  iterations (batch 8, 400 images, 58 s), 0.61 after 900 (batch 8, 600 images, 134 s: 43 %
  of the val peaks inside an object but 12 % inside one of their class), 0.66 after 1000
  (batch 16, 600 images at 64 px, 100 s; train 0.88); objects hit by a peak of their class
  at most 29 %. Shallower
  (stride 4) or wider trunks, higher rates, 64 px inputs did not change this. The releases
  start from ImageNet-pretrained trunks, which cannot be downloaded here.
Cost: about 8-10 s CPU per method with one thread, plus ~2 s per method for the oracle check.
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


def _oracle_peak_retrieval(out):
    """Instance retrieval from peaks placed by hand inside each ground-truth object (with its
    class): peak back-propagation through the trained network, proposal scoring (PRM terms,
    CountSeg's density term), NMS. Masks are read only here, after training.

    Returns:
        (GTs matched at mask IoU >= 0.5 by a retrieved mask of their class,
         GTs with some proposal at IoU >= 0.5, number of GTs).
    """
    import json

    import numpy as np
    from pycocotools import mask as mask_utils
    from scipy.ndimage import distance_transform_edt

    from insplug.core.prm.model import rescale_masks
    runner = out['runner']
    model = runner.model.eval()
    with open(runner.cfg.val_evaluator.ann_file) as f:
        anns = json.load(f)['annotations']
    hit = covered = total = 0
    for i, sample in enumerate(out['samples']):
        gts = [(a['category_id'] - 1, mask_utils.decode(a['segmentation']).astype(bool))
               for a in anns if a['image_id'] == sample.metainfo['img_id']]
        if not gts:
            continue
        image = out['inputs'][i]
        (h0, w0), (h, w) = sample.metainfo['ori_shape'][:2], sample.metainfo['img_shape'][:2]
        with torch.no_grad():
            crm, density = model._test_maps(image[None])
        hm, wm = crm.shape[-2:]
        peaks = []
        for label, mask in gts:  # the object's most interior pixel, on the class-map grid
            y, x = np.unravel_index(distance_transform_edt(mask).argmax(), mask.shape)
            peaks.append([0, label, int((y + 0.5) * h / h0 * hm / image.shape[-2]),
                          int((x + 0.5) * w / w0 * wm / image.shape[-1])])
        proposals = model.proposal_source(image, sample, model.data_preprocessor)
        masks, labels, _ = model._retrieve_one(image, crm[0], torch.tensor(peaks),
                                               None if density is None else density[0],
                                               proposals)
        # compared on the (unpadded) input grid
        masks = masks[:, :h, :w].flatten(1).numpy()
        props = proposals[:, :h, :w].flatten(1).numpy()
        for label, mask in gts:
            m = rescale_masks(torch.from_numpy(mask)[None], (h, w))[0].flatten().numpy()
            iou = (masks & m).sum(1) / np.maximum((masks | m).sum(1), 1)
            hit += bool(((iou >= 0.5) & (labels.numpy() == label)).any())
            covered += bool(((props & m).sum(1) >= 0.5 * np.maximum((props | m).sum(1), 1)).any())
            total += 1
    return hit, covered, total


@pytest.mark.parametrize('run', ['prm_run', 'countseg_run'])
def test_oracle_peaks_retrieve_objects(run, request):
    hit, covered, total = _oracle_peak_retrieval(request.getfixturevalue(run))
    print(f'{run}: oracle peaks retrieve {hit}/{total} objects (proposals cover {covered})')
    # measured 7-9 of 17; controls (uniform / rotated peak response maps) 2 and 1
    assert hit >= 0.25 * total, (hit, covered, total)
