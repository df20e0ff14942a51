"""Boxes without masks: the box-supervised data path (BoxCaseg's box images).

``BoxesOnly`` goes after ``LoadAnnotations`` (or replaces its ``with_mask``): it removes every
mask and polygon field of the results, so the packed ``gt_instances`` hold boxes and labels
only, whatever the annotation file holds. Evaluation reads full masks from the val json through
the metric, not through the pipeline.
"""
from insplug.registry import TRANSFORMS

MASK_KEYS = ('gt_masks', 'gt_seg_map', 'gt_ignore_masks')


@TRANSFORMS.register_module()
class BoxesOnly:
    """Drop ``gt_masks`` (and any mask-like field) from the results: boxes only."""

    def __call__(self, results):
        for key in MASK_KEYS:
            results.pop(key, None)
        for inst in results.get('instances', []) or []:
            inst.pop('mask', None)
        return results

    def __repr__(self):
        return 'BoxesOnly()'
