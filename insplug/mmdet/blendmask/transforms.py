"""``ThingSemanticMap``: BlendMask's auxiliary "thing" semantic target in the data pipeline."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from insplug.core.blendmask.blender import thing_semantic_map
from insplug.registry import TRANSFORMS

__all__ = ['ThingSemanticMap']


@TRANSFORMS.register_module()
class ThingSemanticMap(BaseTransform):
    """Paint ``gt_seg_map`` from the instance masks, as AdelaiDet's
    ``datasets/prepare_thing_sem_from_instance.py`` does offline: every annotation of the image,
    crowd ones included (``gt_ignore_flags`` is not consulted), in annotation order, so the later
    one wins at overlaps; 0 is background and class c is c + 1.

    Put it right after ``LoadAnnotations(with_mask=True)`` (the official map is made at the
    original resolution and then resized with nearest interpolation, as mmdet's ``Resize`` does
    for ``gt_seg_map``), and pad it with 0 (``DetDataPreprocessor(pad_seg=True,
    seg_pad_value=0)``).

    Required keys: ``gt_masks``, ``gt_bboxes_labels``. Added key: ``gt_seg_map`` (H, W) uint8.
    """

    def transform(self, results: dict) -> dict:
        masks = results['gt_masks']
        labels = np.asarray(results['gt_bboxes_labels'], dtype=np.int64)
        arr = masks.to_ndarray() if len(masks) else \
            np.zeros((0, masks.height, masks.width), dtype=np.uint8)
        sem = thing_semantic_map(torch.from_numpy(arr.astype(bool)), torch.from_numpy(labels))
        results['gt_seg_map'] = sem.numpy().astype(np.uint8)
        return results
