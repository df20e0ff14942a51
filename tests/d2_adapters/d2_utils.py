"""Helpers of the detectron2 adapter tests (importable as ``d2_utils``; no detectron2 import at
module level)."""
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
D2_CONFIGS = osp.join(REPO, 'configs', 'detectron2')
INSTALL_HINT = ('detectron2 is not installed: build it from its repository against the '
                'installed torch (in a clone of facebookresearch/detectron2: pip wheel '
                '--no-build-isolation --no-deps -w dist . && pip install --no-deps '
                'dist/detectron2-*.whl, then pip install fvcore iopath omegaconf hydra-core '
                'cloudpickle tabulate yacs); see README, "Detectron2"')


def d2_cfg(name, d2_shapes, *opts):
    """Frozen yacs config of ``configs/detectron2/<name>`` on the registered demo split."""
    from insplug.detectron2.train_net import setup_cfg
    return setup_cfg(osp.join(D2_CONFIGS, name),
                     ['DATASETS.TRAIN', (d2_shapes['train'],), 'DATASETS.TEST',
                      (d2_shapes['val'],), 'DATALOADER.NUM_WORKERS', 0, 'MODEL.DEVICE', 'cpu',
                      *opts])


def first_batch(cfg, train=True, batch_size=2):
    """One mapped batch of the config's first train (or test) set, deterministic order."""
    from detectron2.data import DatasetCatalog, DatasetMapper, get_detection_dataset_dicts
    if train:
        dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=True)
        mapper = DatasetMapper(cfg, is_train=True, augmentations=[])
    else:
        dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])
        mapper = DatasetMapper(cfg, is_train=False, augmentations=[])
    return [mapper(dict(d)) for d in dicts[:batch_size]]


def mmdet_samples(batch, pad_shape, with_gt=True):
    """mmdet ``DetDataSample`` twins of a detectron2 ``batch`` (padded to ``pad_shape``), with
    its ground truth (labels, boxes, bitmap masks) unless ``with_gt`` is False."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    samples = []
    for item in batch:
        h, w = item['image'].shape[-2:]
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=pad_shape,
                                        batch_input_shape=pad_shape, scale_factor=(1.0, 1.0)))
        if with_gt:
            gt = item['instances']
            s.gt_instances = InstanceData(
                labels=gt.gt_classes, bboxes=gt.gt_boxes.tensor,
                masks=BitmapMasks(gt.gt_masks.tensor.numpy().astype(np.uint8), h, w))
        samples.append(s)
    return samples


def train_on_fixed_batch(cfg, batch, iters, seed=0):
    """Build ``cfg``'s model (seeded), train it ``iters`` steps on one fixed ``batch`` with the
    config's optimizer (insplug's ``build_optimizer``) and LR schedule; returns (model in train mode, per-step total losses)."""
    import torch
    from detectron2.modeling import build_model
    from detectron2.solver import build_lr_scheduler
    from detectron2.utils.events import EventStorage

    from insplug.detectron2.solver import build_optimizer
    torch.manual_seed(seed)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    totals = []
    with EventStorage(0) as storage:
        for it in range(iters):
            storage.iter = it
            total = sum(model(batch).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            scheduler.step()
            totals.append(float(total))
    return model, totals
