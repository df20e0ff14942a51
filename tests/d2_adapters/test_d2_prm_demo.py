"""Demo run in detectron2: the PRM and CountSeg shapes yamls train from IMAGE-LEVEL labels /
counts only (the ``register_image_labels`` view: no annotation reaches the mapper) and are
evaluated with detectron2's ``COCOEvaluator`` on the full masks of the same images.

Each: ``build_model`` of ``configs/detectron2/{prm,countseg}_r18_shapes.yaml``, 40 iterations
(SGD lr 0.01 from the yaml's solver, batch 4, first 4 training images at 128 px, no flips),
then inference on those images. As the mmdet twin (tests/e2e/test_prm_countseg_e2e.py), what is
asserted is that the image-level task is learnt (the loss falls; after training the classes with
a positive peak-stimulated score are the image's classes for PRM) and that the whole detectron2
path -- image-level view, mapper, peak back-propagation, retrieval among colour-region proposals,
``Instances``, COCO json -- runs; mask AP is printed, not floored (a trunk trained from scratch
for seconds does not localise: see the mmdet twin's docstring).
"""
import pytest

from d2_utils import INSTALL_HINT, d2_cfg, train_on_fixed_batch

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
import detectron2.data.transforms as T  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402

from insplug.core.prm import peak_stimulation  # noqa: E402
from insplug.detectron2.prm import register_image_labels  # noqa: E402

ITERS = 40


@pytest.mark.parametrize('kind', ['prm', 'countseg'])
def test_demo_trains_from_image_labels(kind, d2_shapes, tmp_path):
    view = register_image_labels(d2_shapes['train'] + '_labels', d2_shapes['train'])
    node = kind.upper()
    cfg = d2_cfg(f'{kind}_r18_shapes.yaml', d2_shapes, 'OUTPUT_DIR', str(tmp_path),
                 'DATASETS.TRAIN', (view,), 'SOLVER.WARMUP_ITERS', 5,
                 f'MODEL.INSPLUG.{node}.TEST.MAX_PEAKS', 4)
    dicts = DatasetCatalog.get(view)[:4]
    mapper = DatasetMapper(cfg, is_train=True, augmentations=[T.ResizeShortestEdge(128, 128)])
    batch = [mapper(dict(d)) for d in dicts]
    assert all('instances' not in b for b in batch)
    model, totals = train_on_fixed_batch(cfg, batch, ITERS)
    start, end = sum(totals[:5]) / 5, sum(totals[-5:]) / 5

    model.eval()
    inputs = [DatasetMapper(cfg, is_train=False,
                            augmentations=[T.ResizeShortestEdge(128, 128)])(dict(d))
              for d in DatasetCatalog.get(d2_shapes['train'])[:4]]
    with torch.no_grad():
        crm = model._test_maps(model.preprocess_image(inputs).tensor)[0]
        scores = peak_stimulation(crm, 3, 'median')[0]
    labels = torch.tensor([b['image_labels'] for b in batch])
    evaluator = COCOEvaluator(d2_shapes['train'], output_dir=str(tmp_path))
    evaluator.reset()
    with torch.no_grad():
        evaluator.process(inputs, model(inputs))
    results = evaluator.evaluate(img_ids=[d['image_id'] for d in dicts])
    print(f'detectron2 {kind} demo: loss {start:.3f} -> {end:.3f}, segm AP50 '
          f'{results["segm"]["AP50"]:.1f}, positive-score accuracy '
          f'{float(((scores > 0).float() == labels).float().mean()):.2f}')
    assert end < 0.7 * start
    assert 'segm' in results
    if kind == 'prm':
        assert torch.equal((scores > 0).float(), labels)
