"""RIS in mmdet: wiring of :mod:`insplug.core.ris` (plants CNN trunk, head, segmentor,
curriculum hook)."""
from typing import List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import BaseModule
from torch import Tensor

from mmengine.structures import InstanceData

from insplug.core.ris import RISConvNet as _RISConvNet, RISRecurrentHead, ris_decode
from insplug.core.ris.pipeline import ris_gt_on_grid, ris_predict, ris_train_loss
from insplug.core.rsis import curriculum_state
from insplug.mmdet.bottomup.detector import BottomUpSegmentor
from insplug.mmdet.rsis.modules import gt_lists, pack_instances, sizes_of
from insplug.registry import HOOKS, MODELS


@MODELS.register_module()
class RISConvNet(BaseModule):
    """The release's plants CNN (:class:`insplug.core.ris.RISConvNet`) as an mmdet backbone;
    returns a 1-tuple."""

    def __init__(self, in_channels: int = 3, channels: int = 30, num_convs: int = 4,
                 kernel_size: int = 3, downsample: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg)
        self.net = _RISConvNet(in_channels, channels, num_convs, kernel_size, downsample)

    def forward(self, x: Tensor):
        return (self.net(x),)


@MODELS.register_module()
class RISHead(BaseModule):
    """RIS recurrent head (:class:`insplug.core.ris.RISRecurrentHead`) with the release's
    matching loss and stop-rule inference.

    Args:
        num_classes: 1 (the release, class-agnostic) or K (adds a class branch: insplug
            extension, cross-entropy on the matched steps times ``class_weight``).
        in_channels: feature channels. in_index: which trunk output feeds the head.
        rnn_size, rnn_layers, kernel_size: release 30, 2, 3.
        feat_size, confidence: see the core head ('flatten' needs the fixed feature size).
        seq_length: release training ``seq_length`` (40): steps ``min(seq_length, M + 1)``.
            :class:`RISCurriculumHook` lowers it during training through the attribute
            ``train_steps_limit`` (None: no limit).
        lam: release ``lambda`` (1). mask_bias_init: the mask shift's start (release 1.0).
        test_cfg: ``max_steps`` (30, release infer_example), ``stop_thr`` (0.5), ``mask_thr``
            (0.9), ``max_per_img`` (100).
    """

    def __init__(self, num_classes: int = 1, in_channels: int = 30, in_index: int = -1,
                 rnn_size: int = 30, rnn_layers: int = 2, kernel_size: int = 3,
                 feat_size: Optional[Sequence[int]] = None, confidence: str = 'flatten',
                 seq_length: int = 40, lam: float = 1.0, class_weight: float = 1.0,
                 mask_bias_init: float = 1.0, test_cfg: dict = None, init_cfg=None):
        super().__init__(init_cfg)
        self.num_classes = num_classes
        self.in_index = in_index
        self.net = RISRecurrentHead(in_channels, rnn_size, rnn_layers, kernel_size, feat_size,
                                    confidence, num_classes, True, mask_bias_init)
        self.seq_length = seq_length
        self.train_steps_limit = None
        self.lam = lam
        self.class_weight = class_weight
        self.test_cfg = dict(max_steps=30, stop_thr=0.5, mask_thr=0.9, max_per_img=100)
        self.test_cfg.update(test_cfg or {})

    def init_weights(self):
        pass  # the core head applies the release's initialisation

    def forward(self, feats: Sequence[Tensor], num_steps: int = None):
        """(mask_logits (B, T, h, w), conf_logits (B, T), class_logits (B, T, K) or None)."""
        return ris_decode(self.net, feats[self.in_index], num_steps or self.test_cfg['max_steps'])

    def loss(self, feats: Sequence[Tensor], data_samples) -> dict:
        x = feats[self.in_index]
        size = tuple(data_samples[0].metainfo['batch_input_shape'])
        masks, labels = ris_gt_on_grid(*gt_lists(data_samples, x.device), size, x.shape[-2:])
        seq_length = self.seq_length if self.train_steps_limit is None \
            else min(self.seq_length, self.train_steps_limit)
        return dict(loss_ris=ris_train_loss(self.net, x, masks, labels, seq_length,
                                            self.lam, self.class_weight))

    def predict(self, feats: Sequence[Tensor], data_samples,
                rescale: bool = True) -> List[InstanceData]:
        size = tuple(data_samples[0].metainfo['batch_input_shape'])
        cfg = self.test_cfg
        results = ris_predict(self.net, feats[self.in_index], size,
                              *sizes_of(data_samples, rescale), cfg['max_steps'],
                              cfg['stop_thr'], cfg['mask_thr'], cfg['max_per_img'])
        return [pack_instances(*r) for r in results]


@MODELS.register_module()
class RISSegmentor(BottomUpSegmentor):
    """RIS: a trunk (the release's :class:`RISConvNet`, or e.g. a ResNet stage as FCN
    features) and :class:`RISHead`; mmdet's detector API, results evaluated by ``CocoMetric``."""


@HOOKS.register_module()
class RISCurriculumHook(Hook):
    """The release's curriculum on the training sequence length: its ``launcher.sh`` trains
    with ``-seq_length 2`` and ``experiment.lua`` resumes from saved models (``-cnn_model``,
    ``-lstm_model``) with another ``-seq_length``. Before every training iteration the head's
    ``train_steps_limit`` is ``start_steps + increment * (iter // interval)`` (capped by the
    head's ``seq_length``; :func:`insplug.core.rsis.curriculum_state`), so an image runs
    ``min(limit, M + 1)`` steps: at 2 steps most images have no step past their last object and
    the loss trains the masks, not the stop confidence."""
    priority = 'NORMAL'

    def __init__(self, start_steps: int = 2, increment: int = 1, interval: int = 1000):
        self.kwargs = dict(start_steps=start_steps, increment=increment, interval=interval)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        head = model.head
        head.train_steps_limit = curriculum_state(runner.iter, head.seq_length, **self.kwargs)[0]
