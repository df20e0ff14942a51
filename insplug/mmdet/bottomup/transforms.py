"""Training crops of the official SpatialEmbeddings release: one crop centred on one object."""
from typing import Tuple

import numpy as np
from mmcv.transforms.utils import cache_randomness
from mmdet.datasets.transforms import RandomCrop
from mmdet.structures.mask import BitmapMasks

from insplug.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ObjectCenteredCrop(RandomCrop):
    """A fixed-size crop centred on the mean pixel of one random (non-ignored) object.

    The official SpatialEmbeddings crops (src/utils/generate_crops.py, and the equivalent
    ``CropRandomObject`` of src/utils/transforms.py): with ``(ym, xm)`` the mean pixel of the
    object, the crop's top-left corner is ``int(clip(ym - h/2, 0, H - h))``,
    ``int(clip(xm - w/2, 0, W - w))``. Images without an object get a uniformly random crop.
    Boxes, masks and labels are cropped as by mmdet's ``RandomCrop`` (whose code this reuses).

    Args:
        crop_size: (h, w), official (512, 512).
    """

    def __init__(self, crop_size: Tuple[int, int] = (512, 512), **kwargs):
        kwargs.setdefault('allow_negative_crop', True)
        super().__init__(crop_size=tuple(crop_size), crop_type='absolute', **kwargs)
        self._offset = None

    @cache_randomness
    def _object_offset(self, results: dict):
        img_h, img_w = results['img'].shape[:2]
        crop_h, crop_w = self.crop_size
        masks = results.get('gt_masks')
        ignore = results.get('gt_ignore_flags')
        if masks is None or len(masks) == 0:
            return None
        arr = masks.masks if isinstance(masks, BitmapMasks) else masks.to_ndarray()
        candidates = [i for i in range(len(arr))
                      if (ignore is None or not ignore[i]) and arr[i].any()]
        if not candidates:
            return None
        mask = arr[candidates[np.random.randint(len(candidates))]]
        ys, xs = np.nonzero(mask)
        top = int(np.clip(ys.mean() - crop_h / 2, 0, max(img_h - crop_h, 0)))
        left = int(np.clip(xs.mean() - crop_w / 2, 0, max(img_w - crop_w, 0)))
        return top, left

    def _rand_offset(self, margin):
        if self._offset is not None:
            return self._offset
        return super()._rand_offset(margin)

    def transform(self, results: dict):
        self._offset = self._object_offset(results)
        try:
            return self._crop_data(results, self.crop_size, self.allow_negative_crop)
        finally:
            self._offset = None
