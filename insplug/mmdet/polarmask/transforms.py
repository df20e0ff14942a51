"""PolarMask's training-annotation filter (the release's ``Coco_Seg_Dataset._parse_ann_info``)."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.structures.mask import PolygonMasks

from insplug.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PolarMaskFilterAnnotations(BaseTransform):
    """Drop the annotations the PolarMask release never trains on.

    The release skips an annotation when ``area <= 15``, or ``w < 10 and h < 10`` (COCO box),
    or its rasterised mask has fewer than 15 pixels; an image left without a (non-crowd)
    annotation is replaced by another one. COCO's ``area`` of a polygon annotation is the pixel
    count of its rasterised mask, so both area tests are ``pixels <= min_area`` here (the mask
    is rasterised as pycocotools does, as the release's ``annToMask``).

    Place it right after ``LoadAnnotations(with_bbox=True, with_mask=True)`` (original image
    coordinates).

    Args:
        min_area: annotations with at most this many mask pixels are dropped (15).
        min_wh: annotations with box width AND height below these are dropped ((10, 10)).
        skip_empty: return None (the dataset picks another image) when no non-crowd
            annotation is left, as the release does.
    """

    def __init__(self, min_area: int = 15, min_wh=(10, 10), skip_empty: bool = True):
        self.min_area = min_area
        self.min_wh = tuple(min_wh)
        self.skip_empty = skip_empty

    def transform(self, results: dict) -> Optional[dict]:
        boxes = results.get('gt_bboxes')
        if boxes is None or len(boxes) == 0:
            return None if self.skip_empty else results
        xyxy = boxes.tensor.numpy() if hasattr(boxes, 'tensor') else np.asarray(boxes)
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        keep = ~((w < self.min_wh[0]) & (h < self.min_wh[1]))
        if 'gt_masks' in results:
            masks = results['gt_masks']
            if isinstance(masks, PolygonMasks):
                pixels = masks.to_ndarray().reshape(len(masks), -1).sum(1)
            else:
                pixels = np.asarray(masks.areas)
            keep &= pixels > self.min_area
        for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_masks', 'gt_ignore_flags'):
            if key in results:
                results[key] = results[key][keep]
        if self.skip_empty:
            flags = results.get('gt_ignore_flags')
            left = keep.sum() if flags is None else int((~flags.astype(bool)).sum())
            if left == 0:
                return None
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(min_area={self.min_area}, min_wh={self.min_wh}, '
                f'skip_empty={self.skip_empty})')
