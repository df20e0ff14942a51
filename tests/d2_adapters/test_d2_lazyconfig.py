"""The LazyConfig files, used the way detectron2's stock ``tools/lazyconfig_train_net.py`` uses
them: ``LazyConfig.load``, ``instantiate(cfg.model)``, ``cfg.optimizer.params.model = model``
and ``instantiate(cfg.optimizer)``, ``instantiate(cfg.dataloader.train)``, and
``instantiate(cfg.dataloader.evaluator)``. Each full-size (ResNet-50) model trains one step on
demo images (shrunk to 128 px to keep the test short), the optimizer steps (RefineMask's clips
gradients), and inference gives image-sized masks.
"""
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402


def load_on_demo(name, d2_shapes, num_classes_key):
    cfg = LazyConfig.load(osp.join(D2_CONFIGS, name))
    cfg = LazyConfig.apply_overrides(cfg, [
        f'dataloader.train.dataset.names={d2_shapes["train"]}',
        f'dataloader.test.dataset.names={d2_shapes["val"]}',
        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
        'dataloader.test.num_workers=0', 'train.device=cpu', f'{num_classes_key}=5',
        'dataloader.train.mapper.instance_mask_format=bitmask'])  # the demo set is RLE
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = (128,)
    cfg.dataloader.train.mapper.augmentations[0].max_size = 128
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = 128
    cfg.dataloader.test.mapper.augmentations[0].max_size = 128
    return cfg


def train_step_and_inference(cfg):
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    model.eval()
    test = next(iter(instantiate(cfg.dataloader.test)))
    with torch.no_grad():
        out = model(test)[0]['instances']
    assert out.image_size == (test[0]['height'], test[0]['width'])
    assert out.pred_masks.shape[-2:] == out.image_size and out.pred_masks.dtype == torch.bool
    assert isinstance(instantiate(cfg.dataloader.evaluator), COCOEvaluator)
    return model, optimizer, losses


def test_refinemask_lazyconfig(d2_shapes):
    cfg = load_on_demo('refinemask_r50_fpn_1x.py', d2_shapes, 'model.roi_heads.num_classes')
    model, optimizer, losses = train_step_and_inference(cfg)
    assert {'loss_mask', 'loss_semantic'} <= set(losses)
    assert model.roi_heads.mask_head.num_classes == 5
    assert 'GradientClip' in type(optimizer).__name__
    assert cfg.train.init_checkpoint.endswith('MSRA/R-50.pkl')


def test_sparseinst_lazyconfig(d2_shapes):
    cfg = load_on_demo('sparseinst_r50_giam.py', d2_shapes, 'model.decoder.num_classes')
    assert cfg.dataloader.train.mapper.image_format == 'RGB'
    model, optimizer, losses = train_step_and_inference(cfg)
    assert set(losses) == {'loss_cls', 'loss_mask', 'loss_dice', 'loss_obj'}
    assert isinstance(optimizer, torch.optim.AdamW)
    assert model.decoder.num_classes == 5
