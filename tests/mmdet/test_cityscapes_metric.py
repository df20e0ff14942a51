"""Cityscapes instance evaluation (InsplugCityscapesMetric) and submission format.

A Cityscapes-format sample is built on the fly: 3 images of 64x128 px under
``leftImg8bit/val/testcity``, their ``gtFine_instanceIds.png`` (16 bit: class id * 1000 +
instance for instances, the class id for stuff, 0 unlabeled) and the COCO-style json mmdet's
``CityscapesDataset`` reads. The metric must give AP 1.0 for perfect predictions, less for
wrong ones, the same per-class APs as the official evaluator
(``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling.evaluateImgLists``) on the
same files, and the written submission must parse back with cityscapesscripts.
"""
import copy
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip('cityscapesscripts', reason='cityscapesscripts (PyPI) is not installed')
PIL = pytest.importorskip('PIL.Image')

import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as CSEval  # noqa: E402
import cityscapesscripts.helpers.labels as CSLabels  # noqa: E402

import insplug.mmdet  # noqa: E402,F401  (registers InsplugCityscapesMetric)
from insplug.mmdet.cityscapes_metric import (InsplugCityscapesMetric,  # noqa: E402
                                             cityscapes_instance_classes,
                                             cityscapes_numpy_compat)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSES = ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
H, W = 64, 128
ROAD = CSLabels.name2label['road'].id
# per image: (class name, y0, y1, x0, x1); every instance >= 100 px (the evaluator's minimum)
OBJECTS = [
    [('car', 30, 50, 10, 40), ('car', 30, 50, 60, 90), ('person', 5, 25, 100, 110)],
    [('car', 20, 40, 20, 60), ('person', 10, 40, 80, 90)],
    [('car', 10, 30, 5, 25), ('car', 35, 60, 70, 120)],
]


def _stem(i):
    return f'testcity_000000_{i:06d}'


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp('cityscapes')
    img_dir = root / 'leftImg8bit' / 'val' / 'testcity'
    gt_dir = root / 'gtFine' / 'val' / 'testcity'
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations, gt_masks = [], [], []
    for i, objects in enumerate(OBJECTS):
        PIL.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            img_dir / f'{_stem(i)}_leftImg8bit.png')
        ids = np.zeros((H, W), np.int32)
        ids[H // 2:, :] = ROAD
        masks = []
        counts = {}
        for name, y0, y1, x0, x1 in objects:
            label_id = CSLabels.name2label[name].id
            inst = label_id * 1000 + counts.setdefault(name, 0)
            counts[name] += 1
            ids[y0:y1, x0:x1] = inst
            masks.append((name, ids == inst))
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i, category_id=label_id, iscrowd=0,
                bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0),
                segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
        PIL.fromarray(ids.astype(np.uint16)).save(gt_dir / f'{_stem(i)}_gtFine_instanceIds.png')
        gt_masks.append(masks)
        images.append(dict(id=i, file_name=f'testcity/{_stem(i)}_leftImg8bit.png',
                           height=H, width=W))
    (root / 'annotations').mkdir()
    categories = [dict(id=CSLabels.name2label[n].id, name=n) for n in CLASSES]
    ann_file = root / 'annotations' / 'instancesonly_filtered_gtFine_val.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=categories)))
    return SimpleNamespace(root=str(root), gt_masks=gt_masks, ann_file=str(ann_file),
                           seg_prefix=str(root / 'gtFine' / 'val'),
                           img_paths=[str(img_dir / f'{_stem(i)}_leftImg8bit.png')
                                      for i in range(len(OBJECTS))])


def _dataset_img_paths(sample):
    """The image paths as mmdet's CityscapesDataset gives them (the json is what it needs)."""
    from mmdet.datasets import CityscapesDataset
    dataset = CityscapesDataset(data_root=sample.root, ann_file=sample.ann_file,
                                data_prefix=dict(img='leftImg8bit/val/'), test_mode=True,
                                pipeline=[])
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [len(info['instances']) for info in infos] == [len(o) for o in OBJECTS]
    return [info['img_path'] for info in infos]


def _predictions(sample, classes, perturb=None):
    """Per-image data samples with the ground-truth masks as predictions (optionally changed)."""
    out = []
    for img_path, masks in zip(sample.img_paths, sample.gt_masks):
        keep = [(n, m) for n, m in masks if n in classes]
        labels = [classes.index(n) for n, _ in keep]
        masks = [m.copy() for _, m in keep]
        scores = [0.9 - 0.1 * k for k in range(len(keep))]
        if perturb is not None:
            masks, labels, scores = perturb(img_path, masks, labels, scores)
        out.append(dict(img_path=img_path, pred_instances=dict(
            masks=torch.from_numpy(np.stack(masks) if masks else np.zeros((0, H, W), bool)),
            labels=torch.tensor(labels, dtype=torch.long),
            scores=torch.tensor(scores, dtype=torch.float32))))
    return out


def _evaluate(sample, tmp_path, data_samples, classes=CLASSES, **kwargs):
    metric = InsplugCityscapesMetric(outfile_prefix=str(tmp_path / 'eval'),
                                     seg_prefix=sample.seg_prefix, **kwargs)
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, data_samples)
    results = metric.compute_metrics(metric.results)
    return metric, results


def test_dataset_reads_the_sample(sample):
    assert _dataset_img_paths(sample) == sample.img_paths


def test_perfect_predictions_ap_1(sample, tmp_path):
    metric, results = _evaluate(sample, tmp_path, _predictions(sample, CLASSES),
                                eval_classes='all', dump_matches=True)
    with open(osp.join(metric.outfile_prefix, 'matches.json')) as f:
        assert len(json.load(f)) == len(OBJECTS)
    assert results['mAP'] == pytest.approx(1.0) and results['AP@50'] == pytest.approx(1.0)
    assert results['car_AP'] == pytest.approx(1.0)
    assert results['person_AP'] == pytest.approx(1.0)
    assert np.isnan(results['bus_AP'])  # no ground truth: NaN, as the official evaluator


def _shift_first_car(img_path, masks, labels, scores):
    if img_path.endswith(f'{_stem(0)}_leftImg8bit.png'):
        masks[0] = np.roll(masks[0], 12, axis=1)  # IoU 18/42 < 0.5 with its car
    return masks, labels, scores


def _false_car(rows, cols):
    def perturb(img_path, masks, labels, scores):
        if img_path.endswith(f'{_stem(1)}_leftImg8bit.png'):
            fp = np.zeros((H, W), bool)
            fp[rows, cols] = True
            masks, labels = masks + [fp], labels + [CLASSES.index('car')]
            scores = scores + [0.99]
        return masks, labels, scores
    return perturb


@pytest.mark.parametrize('perturb,car_ap_is_1', [
    (_shift_first_car, False),
    (_false_car(slice(45, 60), slice(100, 120)), False),  # on the road: a false positive
    (_false_car(slice(0, 15), slice(0, 15)), True),  # on void (unlabeled): ignored, official
])
def test_wrong_predictions_and_equal_to_official_evaluator(sample, tmp_path, monkeypatch,
                                                           perturb, car_ap_is_1):
    data_samples = _predictions(sample, CLASSES, perturb)
    metric, results = _evaluate(sample, tmp_path, data_samples, eval_classes='all')
    if car_ap_is_1:
        assert results['car_AP'] == pytest.approx(1.0) and results['mAP'] == pytest.approx(1.0)
    else:
        assert results['car_AP'] < 0.99 and results['mAP'] < 0.99
    assert results['person_AP'] == pytest.approx(1.0)

    # the official evaluator on the same result files. It dumps matches.json to the cwd with
    # json.dumps(default=o.__dict__), which fails on the np.int64 counts of NumPy 2: not dumped.
    monkeypatch.chdir(tmp_path)
    write_json = CSEval.writeDict2JSON
    monkeypatch.setattr(CSEval, 'writeDict2JSON', lambda d, name: None if name == 'matches.json'
                        else write_json(d, name))
    args = copy.copy(CSEval.args)
    args.JSONOutput, args.quiet, args.colorized = False, True, False
    args.gtInstancesFile = str(tmp_path / 'official_gtInstances.json')
    args.predictionPath = osp.abspath(metric.outfile_prefix)
    gts, preds = zip(*metric.results)
    with cityscapes_numpy_compat():  # cityscapesscripts 2.3.0 calls np.in1d (NumPy < 2.4)
        official = CSEval.evaluateImgLists([p['pred_txt'] for p in preds],
                                           [g['file_name'] for g in gts], args)['averages']
    assert results['mAP'] == pytest.approx(official['allAp'], abs=1e-12)
    assert results['AP@50'] == pytest.approx(official['allAp50%'], abs=1e-12)
    for name in cityscapes_instance_classes():
        ours, theirs = results[f'{name}_AP'], official['classes'][name]['ap']
        assert (np.isnan(ours) and np.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-12)


def test_model_classes_and_label_map(sample, tmp_path):
    """A car-only model: its AP is the car AP ('model'); 'all' counts person as AP 0."""
    _, results = _evaluate(sample, tmp_path, _predictions(sample, ('car',)), classes=('car',))
    assert results['mAP'] == pytest.approx(1.0) and set(results) == {
        'mAP', 'AP@50', 'car_AP', 'car_AP50'}
    _, results = _evaluate(sample, tmp_path, _predictions(sample, ('car',)), classes=('car',),
                           eval_classes='all')
    assert results['car_AP'] == pytest.approx(1.0) and results['person_AP'] == 0.0
    assert results['mAP'] == pytest.approx(0.5)
    # a model class name that Cityscapes does not know: mapped by label_map, refused without
    _, results = _evaluate(sample, tmp_path, _predictions(sample, ('car',)),
                           classes=('vehicle',), label_map=dict(vehicle='car'))
    assert results['car_AP'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='label_map'):
        _evaluate(sample, tmp_path, _predictions(sample, ('car',)), classes=('vehicle',))


def test_submission_files_parse_back(sample, tmp_path):
    metric = InsplugCityscapesMetric(outfile_prefix=str(tmp_path / 'sub'), format_only=True)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, _predictions(sample, CLASSES))
    assert metric.compute_metrics(metric.results) == {}
    result_dir = osp.abspath(str(tmp_path / 'sub' / 'results'))
    assert sorted(os.listdir(result_dir)) == sorted(
        [f'{_stem(i)}_leftImg8bit_pred.txt' for i in range(3)]
        + [f'{_stem(i)}_leftImg8bit_{k}_{n}.png'
           for i, objects in enumerate(OBJECTS) for k, (n, *_) in enumerate(objects)])
    args = copy.copy(CSEval.args)
    args.predictionPath, args.predictionWalk = result_dir, None
    for i, masks in enumerate(sample.gt_masks):
        gt_file = osp.join(sample.seg_prefix, 'testcity', f'{_stem(i)}_gtFine_instanceIds.png')
        pred_txt = CSEval.getPrediction(gt_file, args)  # the file the server would match
        assert osp.basename(pred_txt) == f'{_stem(i)}_leftImg8bit_pred.txt'
        info = CSEval.readPredInfo(pred_txt, args)
        assert len(info) == len(masks)
        for k, (name, gt_mask) in enumerate(masks):
            png = osp.join(result_dir, f'{_stem(i)}_leftImg8bit_{k}_{name}.png')
            assert info[png]['labelID'] == CSLabels.name2label[name].id
            assert info[png]['conf'] == pytest.approx(0.9 - 0.1 * k)
            pred = np.array(PIL.open(png).convert('L')) != 0
            assert pred.shape == (H, W) and (pred == gt_mask).all()


def test_score_decimals(sample, tmp_path):
    """SpatialEmbeddings' release writes the scores as {:.02f}."""
    def scores(img_path, masks, labels, scores):
        return masks, labels, [0.123456 + 0.1 * k for k in range(len(scores))]
    metric = InsplugCityscapesMetric(outfile_prefix=str(tmp_path / 'sub'), format_only=True,
                                     score_decimals=2)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, _predictions(sample, CLASSES, scores))
    with open(metric.results[0][1]['pred_txt']) as f:
        assert [line.split()[2] for line in f] == ['0.12', '0.22', '0.32']


def test_evaluation_needs_seg_prefix():
    with pytest.raises(ValueError, match='seg_prefix'):
        InsplugCityscapesMetric(outfile_prefix=None)


def _configure(argv):
    from insplug.cli.test import configure, parse_args
    return configure(parse_args(argv))


@pytest.mark.parametrize('config', [
    'configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py',
    'configs/discriminative/discriminative_erfnet_cityscapes.py'])
def test_cityscapes_configs_and_test_tool_format(config, tmp_path):
    config = osp.join(REPO, config)
    cfg = _configure([config, 'ckpt.pth', '--work-dir', str(tmp_path)])
    types = [m['type'] for m in cfg.test_evaluator]
    assert types == ['InsplugCocoMetric', 'InsplugCityscapesMetric'] and cfg.val_evaluator[1][
        'seg_prefix'] == 'data/cityscapes/gtFine/val'
    prefix = str(tmp_path / 'submission')
    cfg = _configure([config, 'ckpt.pth', '--work-dir', str(tmp_path), '--format-only', prefix,
                      '--format', 'cityscapes'])
    expected = dict(type='InsplugCityscapesMetric', format_only=True, outfile_prefix=prefix)
    if 'spatialembeddings' in config:
        expected['score_decimals'] = 2  # as the release's test.py
    assert dict(cfg.test_evaluator) == expected
    cfg = _configure([config, 'ckpt.pth', '--work-dir', str(tmp_path), '--format-only', prefix])
    assert [(m['type'], m['format_only'], m['outfile_prefix']) for m in cfg.test_evaluator] == [
        ('InsplugCocoMetric', True, prefix)]
    with pytest.raises(SystemExit):
        _configure([config, 'ckpt.pth', '--format', 'cityscapes'])


def test_test_tool_writes_cityscapes_submission(sample, tmp_path):
    """tools/test.py --format-only PREFIX --format cityscapes with the SpatialEmbeddings
    Cityscapes config on the synthetic sample. The checkpoint is a random model whose last
    convs are set so that every pixel is a seed (seed logit 20) and one cluster covers the
    image (offsets 0, sigma logit -1): one car of the full image size per image."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from insplug.cli.test import main
    from insplug.registry import MODELS
    config = osp.join(REPO, 'configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py')
    init_default_scope('insplug')
    torch.manual_seed(0)
    state = MODELS.build(Config.fromfile(config).model).state_dict()
    for key in ('head.outputs.embedding.conv.weight', 'head.outputs.seed.conv.weight'):
        state[key].zero_()
    state['head.outputs.embedding.conv.bias'][:] = torch.tensor([0.0, 0.0, -1.0])
    state['head.outputs.seed.conv.bias'][:] = 20.0
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=state), ckpt)
    prefix = str(tmp_path / 'submission')
    main([config, ckpt, '--work-dir', str(tmp_path / 'work'), '--format-only', prefix,
          '--format', 'cityscapes', '--cfg-options', f'test_dataloader.dataset.data_root='
          f'{sample.root}/', 'test_dataloader.num_workers=0',
          'test_dataloader.persistent_workers=False'])
    args = copy.copy(CSEval.args)
    args.predictionPath, args.predictionWalk = osp.abspath(osp.join(prefix, 'results')), None
    for i in range(len(OBJECTS)):
        gt_file = osp.join(sample.seg_prefix, 'testcity', f'{_stem(i)}_gtFine_instanceIds.png')
        pred_txt = CSEval.getPrediction(gt_file, args)
        info = CSEval.readPredInfo(pred_txt, args)
        assert len(info) == 1
        (png, entry), = info.items()
        assert entry['labelID'] == CSLabels.name2label['car'].id and entry['conf'] > 0.5
        with open(pred_txt) as f:  # 2 decimals, as the release (score_decimals=2)
            assert f.read() == f'{osp.basename(png)} 26 {entry["conf"]:.2f}\n'
        assert (np.array(PIL.open(png)) != 0).all() and PIL.open(png).size == (W, H)
