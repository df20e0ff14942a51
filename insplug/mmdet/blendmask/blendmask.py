"""BlendMask for mmdet 3.x: ``BlendMask`` (detector), ``BlendMaskFCOSHead`` (the faithful FCOS
with BlendMask's top layer and settings), ``BlendMaskHead`` (bottom module + blender + losses).

The maths is in :mod:`insplug.core.blendmask` and :mod:`insplug.core.fcos`; the bottom module
is the registered ``ProtoNetEncoder`` (:mod:`insplug.core.layers.protonet`). This file only
wires them into mmdet's single-stage instance-segmentation interface. Official reference:
AdelaiDet ``adet/modeling/blendmask`` (see ``docs/deviations/blendmask.md``).
"""
from typing import List, Optional

import torch
import torch.distributed as dist
from mmdet.models.dense_heads.base_mask_head import BaseMaskHead
from mmdet.models.detectors.single_stage_instance_seg import SingleStageInstanceSegmentor
from mmdet.models.utils import unpack_gt_instances
from mmdet.models.utils.misc import empty_instances
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from insplug.core.blendmask import blender as B
from insplug.core.blendmask.semantic_head import SemanticHead
from insplug.core.fcos import rescale_clip_boxes
from insplug.core.postprocess.paste import paste_masks_in_boxes
from insplug.mmdet.fcos import FaithfulFCOSHead
from insplug.mmdet.postprocess.nms import apply_nms_to_results, build_nms
from insplug.registry import MODELS

__all__ = ['BlendMask', 'BlendMaskFCOSHead', 'BlendMaskHead']


@MODELS.register_module()
class BlendMask(SingleStageInstanceSegmentor):
    """BlendMask (Chen et al., CVPR 2020): FCOS proposals + top-layer attentions + bottom bases
    blended per instance. Same data flow as mmdet's CondInst/YOLACT detectors."""


@MODELS.register_module()
class BlendMaskFCOSHead(FaithfulFCOSHead):
    """:class:`~insplug.mmdet.fcos.FaithfulFCOSHead` with BlendMask's top layer (a conv3x3 on
    the box tower predicting K x M x M attentions per location, N(0, 0.01)) and
    Base-BlendMask.yaml's FCOS settings: no per-level Scale (``USE_SCALE: False``) and
    candidates thresholded on cls * ctr (``THRESH_WITH_CTR: True``).

    Args:
        num_bases: K (4). attn_size: M (14).
        Other args: :class:`FaithfulFCOSHead` (``use_scale`` defaults to False here;
        ``test_cfg.thresh_with_ctr`` to True).
    """

    def __init__(self, *args, num_bases: int = 4, attn_size: int = 14,
                 use_scale: bool = False, test_cfg=None, **kwargs) -> None:
        self.num_bases = num_bases
        self.attn_size = attn_size
        test_cfg = ConfigDict(test_cfg or {})
        test_cfg.setdefault('thresh_with_ctr', True)
        super().__init__(*args, use_scale=use_scale, test_cfg=test_cfg,
                         top_channels=num_bases * attn_size * attn_size, **kwargs)


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@MODELS.register_module()
class BlendMaskHead(BaseMaskHead):
    """Bottom module (bases), blender and losses of BlendMask.

    Args:
        num_classes: thing classes (the semantic head predicts num_classes + 1).
        bottom_module: config of the bases encoder (default: ``ProtoNetEncoder`` over P3-P5,
            128 channels, BN, K = 4 bases at stride 4); any registered module mapping the FPN
            tuple to (B, K, H, W) works.
        bottom_sync_bn: 'auto' (AdelaiDet ``BASIS_MODULE.NORM: SyncBN``): the bottom module's
            BatchNorms become SyncBatchNorm when the model is built in a distributed run
            (world size > 1), plain BN otherwise; True / False force it.
        bottom_last_init: 'pytorch' (AdelaiDet: the last 1x1 basis conv keeps PyTorch's default
            init) or 'module' (the bottom module's own init).
        num_bases: K, must match the bottom module and the box head's ``num_bases``.
        attn_size: M (14). bottom_resolution: R (56). bases_stride: stride of the bases (4).
        pooler_sampling_ratio: RoIAlign samples per bin (1).
        loss_mask_weight: instance (blender) loss weight (``INSTANCE_LOSS_WEIGHT`` 1.0).
        semantic_loss_weight: auxiliary semantic loss weight (0.3); 0 disables the head.
        semantic_in_channels / semantic_feat_channels / semantic_stride: semantic head on the
            first FPN level (P3, stride 8), 128 hidden channels.
        test_cfg: ``mask_thr`` (0.5, binarised with ``>=``); optional ``mask_nms`` (e.g.
            ``dict(type='MatrixNMS')``) applied after mask assembly (not in the official).

    The semantic target comes from ``data_sample.gt_sem_seg`` when the pipeline provides it
    (``ThingSemanticMap``: every annotation, crowd included, later wins, as AdelaiDet); without
    it, it is painted here from the non-crowd instance masks followed by the crowd ones.
    """

    def __init__(self, num_classes: int, bottom_module: Optional[dict] = None,
                 bottom_sync_bn='auto', bottom_last_init: str = 'pytorch',
                 num_bases: int = 4, attn_size: int = 14, bottom_resolution: int = 56,
                 bases_stride: int = 4, pooler_sampling_ratio: int = 1,
                 loss_mask_weight: float = 1.0, semantic_loss_weight: float = 0.3,
                 semantic_in_channels: int = 256, semantic_feat_channels: int = 128,
                 semantic_stride: int = 8, train_cfg=None, test_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if bottom_module is None:
            bottom_module = dict(type='ProtoNetEncoder', in_channels=256, feat_channels=128,
                                 num_protos=num_bases, in_levels=(0, 1, 2), level_convs=True,
                                 norm='BN', proto_activation=None, init='kaiming')
        self.bottom_module = MODELS.build(bottom_module)
        out_bases = getattr(self.bottom_module, 'num_protos', num_bases)
        if out_bases != num_bases:
            raise ValueError(f'bottom_module produces {out_bases} bases but num_bases='
                             f'{num_bases}: set both (and the box head\'s num_bases) equal')
        if bottom_last_init not in ('pytorch', 'module'):
            raise ValueError(f"bottom_last_init must be 'pytorch' or 'module', "
                             f"got {bottom_last_init!r}")
        if bottom_last_init == 'pytorch' and hasattr(self.bottom_module, 'proto_conv'):
            self.bottom_module.proto_conv.reset_parameters()
        if bottom_sync_bn is True or (bottom_sync_bn == 'auto' and _is_distributed()):
            self.bottom_module = nn.SyncBatchNorm.convert_sync_batchnorm(self.bottom_module)
        self.num_classes = num_classes
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.bottom_resolution = bottom_resolution
        self.bases_stride = bases_stride
        self.pooler_sampling_ratio = pooler_sampling_ratio
        self.loss_mask_weight = loss_mask_weight
        self.semantic_loss_weight = semantic_loss_weight
        self.semantic_stride = semantic_stride
        self.semantic_head = SemanticHead(semantic_in_channels, num_classes,
                                          semantic_feat_channels) \
            if semantic_loss_weight > 0 else None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    # ------------------------------------------------------------------ forward
    def forward(self, x, positive_infos=None):
        bases = self.bottom_module(x)
        sem_logits = self.semantic_head(x[0]) \
            if self.semantic_head is not None and self.training else None
        return bases, sem_logits

    def _pool_and_blend(self, bases: Tensor, boxes: Tensor, batch_inds: Tensor,
                        attns: Tensor) -> Tensor:
        rois = B.pool_bases(bases, boxes, batch_inds, self.bottom_resolution,
                            1.0 / self.bases_stride, self.pooler_sampling_ratio)
        return B.blend(rois, attns, self.attn_size)

    # ------------------------------------------------------------------ training
    def loss(self, x, batch_data_samples, positive_infos=None, **kwargs) -> dict:
        outs = self(x)
        gts, gts_ignore, metas = unpack_gt_instances(batch_data_samples)
        sem_maps = [s.gt_sem_seg.sem_seg[0] if 'gt_sem_seg' in s else None
                    for s in batch_data_samples]
        return self.loss_by_feat(*outs, batch_gt_instances=gts, batch_img_metas=metas,
                                 positive_infos=positive_infos,
                                 batch_gt_instances_ignore=gts_ignore, batch_sem_maps=sem_maps)

    def mask_targets(self, gt: InstanceData, device) -> Tensor:
        """(G, R, R) float {0, 1}: each GT mask cropped to its box and resized (detectron2
        ``crop_and_resize``: RoIAlign aligned >= 0.5 for bitmaps, polygons rasterised in the
        box for polygon masks)."""
        num = len(gt)
        if num == 0:
            return torch.zeros((0, self.bottom_resolution, self.bottom_resolution),
                               device=device)
        if isinstance(gt.masks, Tensor):
            return B.crop_and_resize_masks(gt.masks, gt.bboxes, self.bottom_resolution)
        inds = torch.arange(num).numpy()
        out = gt.masks.crop_and_resize(gt.bboxes.detach().cpu().numpy(),
                                       (self.bottom_resolution, self.bottom_resolution), inds,
                                       device=device, binarize=True)
        return out.to_tensor(dtype=torch.float32, device=device)

    def loss_by_feat(self, bases: Tensor, sem_logits: Optional[Tensor],
                     batch_gt_instances: List[InstanceData], batch_img_metas: List[dict],
                     positive_infos: List[InstanceData], batch_gt_instances_ignore=None,
                     batch_sem_maps=None, **kwargs) -> dict:
        if positive_infos is None:
            raise ValueError('BlendMaskHead needs positive_infos from its box head '
                             '(use bbox_head=dict(type=\'BlendMaskFCOSHead\', ...))')
        device = bases.device
        boxes, batch_inds, attns, targets, ctrs = [], [], [], [], []
        for i, (gt, pos) in enumerate(zip(batch_gt_instances, positive_infos)):
            gt_inds = pos.pos_assigned_gt_inds
            if gt_inds.numel() == 0:
                continue
            crops = self.mask_targets(gt, device)  # crop every GT once, gather per positive
            boxes.append(gt.bboxes[gt_inds])
            batch_inds.append(torch.full_like(gt_inds, i))
            attns.append(pos.param_preds)
            ctrs.append(pos.ctr_targets)
            targets.append(crops[gt_inds])
        losses = {}
        if boxes:
            logits = self._pool_and_blend(bases, torch.cat(boxes).to(bases.dtype),
                                          torch.cat(batch_inds), torch.cat(attns))
            loss_mask = B.blender_mask_loss(logits, torch.cat(targets).to(logits.dtype),
                                            torch.cat(ctrs), positive_infos[0].loss_denorm)
        else:  # no positive location in the batch (official: zero-valued, graph connected)
            loss_mask = bases.sum() * 0 + sum(p.param_preds.sum() * 0 for p in positive_infos)
        losses['loss_mask'] = loss_mask * self.loss_mask_weight
        if sem_logits is not None:
            h, w = sem_logits.shape[-2:]
            sem_targets = []
            for i, gt in enumerate(batch_gt_instances):
                sem = batch_sem_maps[i] if batch_sem_maps is not None else None
                if sem is None:
                    masks, labels = self._all_masks(gt, batch_gt_instances_ignore, i, device)
                    sem = B.thing_semantic_map(masks, labels)
                sem_targets.append(B.downsample_semantic(sem.to(device).long(),
                                                         self.semantic_stride, (h, w)))
            losses['loss_basis_sem'] = B.semantic_loss(sem_logits, torch.stack(sem_targets),
                                                       self.semantic_loss_weight)
        return losses

    @staticmethod
    def _all_masks(gt, ignore, i, device):
        """Instance masks followed by the crowd (ignored) ones, on a common zero-padded
        canvas: (G, H, W) bool and (G,) labels."""
        parts = [(gt.masks, gt.labels)]
        if ignore is not None and ignore[i] is not None and len(ignore[i]) \
                and 'masks' in ignore[i]:
            parts.append((ignore[i].masks, ignore[i].labels))
        h = max(m.height for m, _ in parts)
        w = max(m.width for m, _ in parts)
        masks, labels = [], []
        for m, lab in parts:
            t = m.to_tensor(dtype=torch.bool, device=device) if len(m) else \
                torch.zeros((0, m.height, m.width), dtype=torch.bool, device=device)
            canvas = t.new_zeros((t.shape[0], h, w))
            canvas[:, :t.shape[1], :t.shape[2]] = t
            masks.append(canvas)
            labels.append(lab.to(device).long())
        return torch.cat(masks), torch.cat(labels)

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, bases: Tensor, sem_logits, results_list: List[InstanceData],
                        batch_img_metas: List[dict], rescale: bool = True, **kwargs):
        cfg = self.test_cfg
        mask_thr = cfg.get('mask_thr', 0.5) if cfg is not None else 0.5
        mask_nms = cfg.get('mask_nms', None) if cfg is not None else None
        # the blender runs on the unclipped FCOS boxes (input-image pixels)
        boxes = torch.cat([r.bboxes for r in results_list])
        batch_inds = torch.cat([torch.full((len(r),), i, dtype=torch.long, device=bases.device)
                                for i, r in enumerate(results_list)])
        attns = torch.cat([r.param_preds for r in results_list])
        probs = self._pool_and_blend(bases, boxes.to(bases.dtype), batch_inds, attns).sigmoid() \
            if boxes.numel() else bases.new_zeros((0, self.bottom_resolution,
                                                   self.bottom_resolution))
        out = []
        for i, (results, meta) in enumerate(zip(results_list, batch_img_metas)):
            results = InstanceData(bboxes=results.bboxes, scores=results.scores,
                                   labels=results.labels)
            img_probs = probs[batch_inds == i]
            if rescale:
                sf = meta['scale_factor']
                h, w = meta['ori_shape'][:2]
                scale = (1.0 / sf[0], 1.0 / sf[1])
            else:
                h, w = meta['img_shape'][:2]
                scale = (1.0, 1.0)
            # detectron2 detector_postprocess: scale, clip to the image, drop empty boxes,
            # paste into the clipped boxes, >= mask_thr
            bboxes, keep = rescale_clip_boxes(results.bboxes, scale, (h, w))
            results.bboxes = bboxes
            results, img_probs = results[keep], img_probs[keep]
            if len(results) == 0:
                out.append(empty_instances([meta], bases.device, task_type='mask',
                                           instance_results=[results])[0])
                continue
            # detectron2's paste geometry in float32, on each box's support window only
            results.masks = paste_masks_in_boxes(img_probs, results.bboxes, h, w, mask_thr,
                                                 dtype=torch.float32)
            if mask_nms is not None:
                results = apply_nms_to_results(results, build_nms(mask_nms))
            out.append(results)
        return out
