"""Image-level labels and counts from an ordinary COCO-format sample (PRM, CountSeg).

``ImageLevelLabels`` turns the loaded annotations (``LoadAnnotations``) of a sample into

* ``gt_image_labels``: (K,) float32 multi-hot, every annotated instance counts, including
  ignored (crowd / VOC-difficult) ones -- the PRM release trains VOC "difficult" labels as
  positives (``difficult_samples: yes``);
* ``gt_image_counts``: (K,) int64 number of non-ignored instances per class -- the CountSeg
  release counts non-difficult objects only,

and DELETES the instance annotations (boxes, labels, ignore flags, masks, semantic map), so
nothing finer than image-level supervision reaches the model. Put it after ``LoadAnnotations``
(and after geometric transforms, which need no boxes then) and before ``PackDetInputs`` with
``meta_keys`` including ``'gt_image_labels'`` and ``'gt_image_counts'``
(``IMAGE_LABEL_META_KEYS``). The val pipeline is unchanged: the metric reads the full masks from
its annotation file.
"""
import numpy as np

from insplug.core.prm.labels import image_labels_and_counts
from insplug.registry import TRANSFORMS

INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags', 'gt_masks', 'gt_seg_map',
                 'gt_instances_ids')
__all__ = ['ImageLevelLabels', 'image_labels_and_counts', 'INSTANCE_KEYS',
           'IMAGE_LABEL_META_KEYS']
IMAGE_LABEL_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                         'flip', 'flip_direction', 'gt_image_labels', 'gt_image_counts')


@TRANSFORMS.register_module()
class ImageLevelLabels:
    """Keep only image-level labels and counts of a sample (see the module docstring).

    Args:
        num_classes: K.
    """

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def __call__(self, results):
        labels = results.get('gt_bboxes_labels', np.zeros(0, np.int64))
        ignore = results.get('gt_ignore_flags')
        results['gt_image_labels'], results['gt_image_counts'] = image_labels_and_counts(
            labels, ignore, self.num_classes)
        for key in INSTANCE_KEYS:
            results.pop(key, None)
        return results

    def __repr__(self):
        return f'{type(self).__name__}(num_classes={self.num_classes})'
