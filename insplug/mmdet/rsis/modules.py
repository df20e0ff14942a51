"""RSIS in mmdet: wiring of :mod:`insplug.core.rsis` (trunk with the stem level, head,
segmentor, curriculum hook)."""
from typing import List, Sequence

import torch
from mmdet.models.backbones import ResNet
from mmengine.hooks import Hook
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.postprocess.mask_boxes import masks_to_boxes
from insplug.core.rsis import RSISDecoder, RSISSkips, curriculum_state, rsis_decode
from insplug.core.rsis.pipeline import rsis_gt_sequences, rsis_predict, rsis_train_losses
from insplug.mmdet.bottomup.detector import BottomUpSegmentor
from insplug.registry import HOOKS, MODELS


@MODELS.register_module()
class RSISResNet(ResNet):
    """mmdet ``ResNet`` returning RSIS's five levels, deepest first: layer4, layer3, layer2,
    layer1 and the stem's ReLU output before max-pooling (release ``vision.py``:
    ``x5, x4, x3, x2, x1``). ``out_indices`` is ignored."""

    def forward(self, x: Tensor):
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        stem = x
        x = self.maxpool(x)
        outs = []
        for name in self.res_layers:
            x = getattr(self, name)(x)
            outs.append(x)
        return tuple(outs[::-1]) + (stem,)


def gt_lists(data_samples, device):
    """Per image: GT masks (M_b, h_b, w_b) bool and labels (M_b,) of ``gt_instances``."""
    masks, labels = [], []
    for sample in data_samples:
        gt = sample.gt_instances
        h, w = sample.metainfo['img_shape'][:2]
        if len(gt) == 0:
            masks.append(torch.zeros(0, h, w, dtype=torch.bool, device=device))
        else:
            masks.append(gt.masks.to_tensor(dtype=torch.bool, device=device))
        labels.append(gt.labels.to(device).long())
    return masks, labels


def pack_instances(masks: Tensor, scores: Tensor, labels: Tensor) -> InstanceData:
    """Core results -> ``InstanceData`` with boxes from the masks."""
    results = InstanceData()
    results.masks = masks
    results.scores = scores
    results.labels = labels
    results.bboxes = masks_to_boxes(masks).float()
    return results


def sizes_of(data_samples, rescale: bool):
    """(image sizes, output sizes or Nones) of a batch."""
    img = [s.metainfo['img_shape'][:2] for s in data_samples]
    out = [s.metainfo['ori_shape'][:2] if rescale else None for s in data_samples]
    return img, out


@MODELS.register_module()
class RSISHead(BaseModule):
    """RSIS skip projections + recurrent decoder with the release's losses and inference.

    Args:
        num_classes: K foreground classes (the decoder has K + 1 class outputs, index 0 the
            release's end-of-sequence class).
        in_channels: the five trunk levels' channels, deepest first (ResNet-101: 2048, 1024,
            512, 256, 64).
        hidden_size, kernel_size, skip_mode, dropout, dropout_cls, dropout_stop: release
            ``hidden_size`` (128), ``kernel_size`` (3), ``skip_mode`` ('concat'), dropouts (0).
        max_steps: release ``maxseqlen`` (10; CVPPP 20): steps decoded at test time and the
            most in training.
        max_gt: release ``gt_maxseqlen`` (20).
        iou_weight, class_weight, stop_weight, stop_balance_weight: release 1.0, 0.1, 0.5, 0.5.
        use_class_loss, use_stop_loss, train_steps_limit: the schedule's state (set by
            :class:`RSISCurriculumHook`; without the hook: both losses on, no step limit).
        test_cfg: ``stop_thr`` (0.5), ``mask_thr`` (0.5), ``min_size`` (0.001),
            ``max_per_img`` (100).
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int] = (2048, 1024, 512, 256, 64),
                 hidden_size: int = 128, kernel_size: int = 3, skip_mode: str = 'concat',
                 dropout: float = 0.0, dropout_cls: float = 0.0, dropout_stop: float = 0.0,
                 max_steps: int = 10, max_gt: int = 20, iou_weight: float = 1.0,
                 class_weight: float = 0.1, stop_weight: float = 0.5,
                 stop_balance_weight: float = 0.5, use_class_loss: bool = True,
                 use_stop_loss: bool = True, train_steps_limit: int = None,
                 test_cfg: dict = None, init_cfg=None):
        super().__init__(init_cfg)
        self.num_classes = num_classes
        self.skips = RSISSkips(in_channels, hidden_size, kernel_size)
        self.decoder = RSISDecoder(hidden_size, num_classes + 1, kernel_size, skip_mode,
                                   dropout, dropout_cls, dropout_stop)
        self.max_steps = max_steps
        self.max_gt = max_gt
        self.weights = dict(mask=iou_weight, cls=class_weight, stop=stop_weight)
        self.stop_balance_weight = stop_balance_weight
        self.use_class_loss = use_class_loss
        self.use_stop_loss = use_stop_loss
        self.train_steps_limit = train_steps_limit
        self.test_cfg = dict(stop_thr=0.5, mask_thr=0.5, min_size=0.001, max_per_img=100)
        self.test_cfg.update(test_cfg or {})

    def forward(self, feats: Sequence[Tensor], num_steps: int = None, out_size=None):
        """Decode ``num_steps`` (default ``max_steps``) steps: mask logits (B, T, H, W) at
        ``out_size`` (default twice the shallowest level: the input size), class logits
        (B, T, K + 1), stop logits (B, T)."""
        skips = self.skips(feats)
        if out_size is None:
            out_size = (skips[-1].shape[-2] * 2, skips[-1].shape[-1] * 2)
        return rsis_decode(self.decoder, skips, num_steps or self.max_steps, out_size)

    def loss(self, feats: Sequence[Tensor], data_samples) -> dict:
        size = tuple(data_samples[0].metainfo['batch_input_shape'])
        masks, labels = rsis_gt_sequences(*gt_lists(data_samples, feats[0].device), size,
                                          self.max_gt)
        return rsis_train_losses(self.decoder, self.skips(feats), masks, labels, self.max_steps,
                                 self.train_steps_limit, self.max_gt, self.weights,
                                 self.stop_balance_weight, self.use_class_loss,
                                 self.use_stop_loss)

    def predict(self, feats: Sequence[Tensor], data_samples,
                rescale: bool = True) -> List[InstanceData]:
        size = tuple(data_samples[0].metainfo['batch_input_shape'])
        cfg = self.test_cfg
        results = rsis_predict(self.decoder, self.skips(feats), size,
                               *sizes_of(data_samples, rescale), self.max_steps, cfg['stop_thr'],
                               cfg['mask_thr'], cfg['min_size'], cfg['max_per_img'])
        return [pack_instances(*r) for r in results]


@MODELS.register_module()
class RSISSegmentor(BottomUpSegmentor):
    """RSIS: a trunk giving five levels deepest first (:class:`RSISResNet`) and
    :class:`RSISHead`; mmdet's detector API, results evaluated by ``CocoMetric``."""


@HOOKS.register_module()
class RSISCurriculumHook(Hook):
    """Sets the RSIS head's step limit and loss switches before every training iteration
    from :func:`insplug.core.rsis.curriculum_state` (arguments as there; ``by_epoch`` counts
    epochs instead of iterations)."""
    priority = 'NORMAL'

    def __init__(self, curriculum: bool = True, start_steps: int = 2, increment: int = 1,
                 interval: int = 1000, class_loss_after: int = 0, stop_loss_after: int = 0,
                 min_steps: int = 1, by_epoch: bool = False):
        self.kwargs = dict(curriculum=curriculum, start_steps=start_steps, increment=increment,
                           interval=interval, class_loss_after=class_loss_after,
                           stop_loss_after=stop_loss_after, min_steps=min_steps)
        self.by_epoch = by_epoch

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        head = model.head
        progress = runner.epoch if self.by_epoch else runner.iter
        limit, use_class, use_stop = curriculum_state(progress, head.max_steps, **self.kwargs)
        head.train_steps_limit = limit
        head.use_class_loss = use_class
        head.use_stop_loss = use_stop
