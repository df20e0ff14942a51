"""Demo run: detectron2 ``InsplugBlendMask`` (``configs/detectron2/blendmask_r18_shapes.yaml``,
ResNet-18 from scratch) learns on the bundled shapes set.

As the mmdet e2e test (tests/e2e/test_blendmask_e2e.py): 40 iterations, batch 4, SGD lr 0.01
(5-iteration linear warm-up from 0.1x, as ``train_and_evaluate``), on the first 8 training
images at 160 px without flips, evaluated by detectron2's ``COCOEvaluator`` on those same
images (the check is that the detectron2 pipeline -- FCOS assignment, top-layer attentions,
bases, blender, mask and semantic losses, inference and ``detector_postprocess`` pasting -- can
fit data). The loss must fall by a quarter and segm AP50 clear a floor (an untrained model
scores 0: nothing clears the 0.05 score threshold). About a minute at one thread.
"""
import json
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, d2_cfg  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.evaluation import COCOEvaluator, inference_on_dataset  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.detectron2 import build_optimizer, register_coco_instances  # noqa: E402

ITERS, BATCH, NUM_IMAGES, SIZE = 40, 4, 8, 160


def mean(x):
    return sum(x) / len(x)


@pytest.fixture(scope='module')
def demo_run(d2_shapes, tmp_path_factory):
    work = tmp_path_factory.mktemp('d2_blendmask_demo')
    root = d2_shapes['root_dir']
    with open(osp.join(root, 'train', 'annotations.json')) as f:
        coco = json.load(f)
    keep = sorted(im['id'] for im in coco['images'])[:NUM_IMAGES]
    coco['images'] = [im for im in coco['images'] if im['id'] in keep]
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in keep]
    ann = osp.join(str(work), 'train_first8.json')
    with open(ann, 'w') as f:
        json.dump(coco, f)
    name = 'd2test_blendmask_demo_fit'
    if name not in DatasetCatalog.list():
        register_coco_instances(name, ann, osp.join(root, 'train', 'images'))
    cfg = d2_cfg('blendmask_r18_shapes.yaml', d2_shapes, 'DATASETS.TRAIN', (name,),
                 'DATASETS.TEST', (name,), 'SOLVER.BASE_LR', 0.01, 'OUTPUT_DIR', str(work))
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    resize = [T.ResizeShortestEdge(SIZE, SIZE)]
    train_mapper = DatasetMapper(cfg, is_train=True, augmentations=resize)
    dicts = DatasetCatalog.get(name)
    data = [train_mapper(dict(d)) for d in dicts]
    losses = []
    model.train()
    with EventStorage(0):
        for it in range(ITERS):
            for group in optimizer.param_groups:
                group['lr'] = cfg.SOLVER.BASE_LR * (0.1 + 0.9 * min(it, 5) / 5)
            batch = [data[(it * BATCH + j) % len(data)] for j in range(BATCH)]
            loss = model(batch)
            total = sum(loss.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            losses.append(float(total))
    model.eval()
    test_mapper = DatasetMapper(cfg, is_train=False, augmentations=resize)
    loader = [[test_mapper(dict(d))] for d in dicts]
    evaluator = COCOEvaluator(name, tasks=('bbox', 'segm'), distributed=False,
                              output_dir=str(work))
    metrics = inference_on_dataset(model, loader, evaluator)
    print(f'detectron2 BlendMask demo: loss {mean(losses[:8]):.3f} -> '
          f'{mean(losses[-8:]):.3f}, segm AP50 {metrics["segm"]["AP50"]:.1f}')
    return dict(losses=losses, metrics=metrics)


def test_loss_falls(demo_run):
    losses = demo_run['losses']
    assert len(losses) == ITERS
    assert mean(losses[-8:]) < 0.75 * mean(losses[:8]), losses


def test_segm_ap_above_floor(demo_run):
    # detectron2 reports AP in percent; the mmdet twin's floor is mAP50 0.05. Measured at one
    # thread: 20.3 (seed 0, loss 3.76 -> 1.75), 10.0 (seed 1, loss 3.69 -> 1.90)
    assert demo_run['metrics']['segm']['AP50'] > 5.0, demo_run['metrics']
