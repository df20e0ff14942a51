"""Ground-truth masks of detectron2 ``Instances`` as plain tensors for the core.

Shapes: M instances of one image, (H, W) its un-padded input size.
"""
import torch
from detectron2.structures import BitMasks, PolygonMasks


def image_mask_tensor(gt_masks, height, width, device):
    """Whole-image binary masks of one image's ground truth.

    Args:
        gt_masks: ``PolygonMasks`` or ``BitMasks`` of M instances (M may be 0).
        height, width: the image's (un-padded) input size.

    Returns:
        (M, height, width) bool tensor.
    """
    if len(gt_masks) == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=device)
    if isinstance(gt_masks, PolygonMasks):
        gt_masks = BitMasks.from_polygon_masks(gt_masks.polygons, height, width)
    if not isinstance(gt_masks, BitMasks):
        raise TypeError(f'gt_masks must be PolygonMasks or BitMasks, got '
                        f'{type(gt_masks).__name__}: set INPUT.MASK_FORMAT to "polygon" or '
                        '"bitmask"')
    return gt_masks.tensor.to(device=device, dtype=torch.bool)


def instances_mask_tensor(instances, device):
    """(M, H, W) bool masks of one image's ground-truth ``Instances`` (M = 0 without masks).

    Raises when instances exist but carry no ``gt_masks``.
    """
    height, width = instances.image_size
    if not instances.has('gt_masks'):
        if len(instances):
            raise KeyError('the ground truth has no gt_masks: the dataset needs "segmentation" '
                           'annotations and MODEL.MASK_ON must be True')
        return torch.zeros((0, height, width), dtype=torch.bool, device=device)
    return image_mask_tensor(instances.gt_masks, height, width, device)
