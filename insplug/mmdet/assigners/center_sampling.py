"""mmdet adapter of the FCOS centre-sampling assigner (:mod:`insplug.core.assigners`)."""
import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmengine.structures import InstanceData

from insplug.core.assigners.center_sampling import center_sampling_assign, mask_mass_centers
from insplug.registry import TASK_UTILS


@TASK_UTILS.register_module()
class CenterSamplingAssigner(BaseAssigner):
    """FCOS assignment with centre sampling around the box centre or the mask mass centre.

    Args:
        radius: half-size of the sampling square in strides (FCOS, PolarMask: 1.5);
            ``<= 0`` samples the whole box.
        center: ``'box'`` (FCOS, CenterMask, EmbedMask) or ``'mask'`` (PolarMask, SOLO); the
            mask centre needs ``gt_instances.masks``.

    ``pred_instances`` holds ``priors`` (P, 2) points, ``strides`` (P,) and ``regress_ranges``
    (P, 2). The result's ``gt_inds`` is 1-based (0: background), ``labels`` -1 for background.
    """

    def __init__(self, radius: float = 1.5, center: str = 'box'):
        if center not in ('box', 'mask'):
            raise ValueError(f"CenterSamplingAssigner: `center` must be 'box' or 'mask', "
                             f'got {center!r}')
        self.radius = radius
        self.center = center

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               gt_instances_ignore=None, **kwargs) -> AssignResult:
        points = pred_instances.priors
        boxes = gt_instances.bboxes.to(points)
        centers = None
        if self.center == 'mask' and len(gt_instances) > 0:
            if 'masks' not in gt_instances:
                raise ValueError("CenterSamplingAssigner(center='mask') needs gt masks: add "
                                 "`with_mask=True` to LoadAnnotations")
            masks = gt_instances.masks
            if hasattr(masks, 'to_tensor'):
                masks = masks.to_tensor(dtype=torch.bool, device=points.device)
            centers = mask_mass_centers(masks).to(points)
        index = center_sampling_assign(points, pred_instances.strides.to(points),
                                       pred_instances.regress_ranges.to(points), boxes,
                                       centers, self.radius)
        labels = torch.full_like(index, -1)
        pos = index >= 0
        labels[pos] = gt_instances.labels[index[pos]]
        return AssignResult(len(boxes), index + 1, None, labels=labels)


def gt_mask_tensor(gt_instances, device):
    """(G, H, W) bool masks of ``gt_instances`` with a clear error when they are missing."""
    if 'masks' not in gt_instances:
        raise ValueError('this head needs instance masks: set `with_mask=True` in '
                         'LoadAnnotations of the training pipeline')
    masks = gt_instances.masks
    if hasattr(masks, 'to_tensor'):
        masks = masks.to_tensor(dtype=torch.bool, device=device)
    return masks.bool().to(device)


def level_priors(points, strides, regress_ranges):
    """Concatenate per-level points with their stride and regress range.

    Args:
        points: list over levels of (P_l, 2) points.
        strides: per-level strides (int or (sx, sy); the x stride is used).
        regress_ranges: per-level (lo, hi).

    Returns:
        InstanceData with priors (P, 2), strides (P,), regress_ranges (P, 2).
    """
    stride = [s[0] if isinstance(s, (tuple, list)) else s for s in strides]
    return InstanceData(
        priors=torch.cat(points),
        strides=torch.cat([p.new_full((len(p),), float(s)) for p, s in zip(points, stride)]),
        regress_ranges=torch.cat([p.new_tensor(r)[None].expand(len(p), 2)
                                  for p, r in zip(points, regress_ranges)]))


def assign_batch(assigner, priors: InstanceData, batch_gt_instances):
    """Run ``assigner`` on every image.

    Returns:
        list over images of (P,) long object indices, -1 for background.
    """
    return [assigner.assign(priors, gt).gt_inds - 1 for gt in batch_gt_instances]
