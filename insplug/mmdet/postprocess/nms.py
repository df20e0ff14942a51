"""Registered NMS family: ``BoxNMS``, ``FastNMS``, ``MatrixNMS``, ``MaskIoUNMS``.

A head's ``test_cfg`` chooses one with e.g. ``nms=dict(type='FastNMS', iou_thr=0.5, top_k=200)``
and applies it with :func:`apply_nms_to_results`. Each object is a callable
``(scores (N,), labels (N,), boxes=(N, 4) | None, masks=(N, H, W) | None) -> (keep, scores)``
wrapping :mod:`insplug.core.postprocess.nms` (the maths lives there).
"""
import inspect
from functools import partial

from mmengine.structures import InstanceData

from insplug.core.postprocess import nms as core_nms
from insplug.registry import TASK_UTILS

__all__ = ['BoxNMS', 'FastNMS', 'MatrixNMS', 'MaskIoUNMS', 'build_nms', 'apply_nms_to_results']


class _NMS:
    method = None
    needs_masks = False

    def __init__(self, **params):
        self.params = params
        self._fn = partial(core_nms.NMS_METHODS[self.method], **params)
        # fail at build time on a wrong keyword, not at the first image
        allowed = inspect.signature(core_nms.NMS_METHODS[self.method]).parameters
        bad = set(params) - set(allowed) - {'scores', 'labels', 'boxes', 'masks'}
        if bad:
            raise TypeError(f'{type(self).__name__} got unknown parameters {sorted(bad)}; '
                            f'allowed: {sorted(set(allowed) - {"scores", "labels", "boxes", "masks"})}')

    @property
    def uses_masks(self) -> bool:
        return self.needs_masks or bool(self.params.get('use_masks', False))

    def __call__(self, scores, labels, boxes=None, masks=None):
        return self._fn(scores, labels, boxes=boxes, masks=masks)

    def __repr__(self):
        return f'{type(self).__name__}({self.params})'


@TASK_UTILS.register_module()
class BoxNMS(_NMS):
    """Greedy box NMS (``iou_thr``, ``max_num``, ``class_agnostic``)."""
    method = 'box'


@TASK_UTILS.register_module()
class FastNMS(_NMS):
    """YOLACT's Fast NMS (``iou_thr``, ``top_k``, ``max_num``, ``use_masks``,
    ``class_agnostic``)."""
    method = 'fast'


@TASK_UTILS.register_module()
class MatrixNMS(_NMS):
    """SOLOv2's Matrix NMS on masks (``kernel``, ``sigma``, ``nms_pre``, ``filter_thr``,
    ``max_num``, ``class_agnostic``)."""
    method = 'matrix'
    needs_masks = True


@TASK_UTILS.register_module()
class MaskIoUNMS(_NMS):
    """Greedy NMS on mask IoU (``iou_thr``, ``nms_pre``, ``max_num``, ``class_agnostic``)."""
    method = 'mask'
    needs_masks = True


def build_nms(cfg):
    """Build a registered NMS from a config dict (or pass an already built one through)."""
    if isinstance(cfg, _NMS):
        return cfg
    return TASK_UTILS.build(dict(cfg))


def apply_nms_to_results(results: InstanceData, nms) -> InstanceData:
    """Apply a registered NMS to ``results`` (``scores``, ``labels``, ``bboxes`` and/or
    ``masks`` of length N) and return the kept rows, sorted, with updated ``scores``."""
    nms = build_nms(nms)
    masks = results.get('masks', None)
    if nms.uses_masks and masks is None:
        raise ValueError(f'{nms!r} needs results.masks: use it where masks exist '
                         '(e.g. a mask head\'s test_cfg.mask_nms)')
    keep, scores = nms(results.scores, results.labels, boxes=results.get('bboxes', None),
                       masks=masks if nms.uses_masks else None)
    results = results[keep]
    results.scores = scores
    return results
