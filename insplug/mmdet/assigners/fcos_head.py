"""mmdet's FCOSHead with its point targets from the shared centre-sampling assigner."""
import torch
from mmdet.models.dense_heads import FCOSHead

from insplug.core.assigners.center_sampling import center_sampling_assign
from insplug.registry import MODELS


@MODELS.register_module()
class CenterSamplingFCOSHead(FCOSHead):
    """FCOS whose targets come from :func:`insplug.core.assigners.center_sampling_assign`.

    With ``center_sampling=True`` (radius ``center_sample_radius``) this reproduces FCOS's
    centre-sampling rule around the box centre; it is the detection part of CenterMask and
    the base of EmbedMask's head.
    """

    def _get_targets_single(self, gt_instances, points, regress_ranges, num_points_per_lvl):
        strides = [s[0] if isinstance(s, (tuple, list)) else s for s in self.strides]
        point_strides = torch.cat([points.new_full((n,), float(s))
                                   for n, s in zip(num_points_per_lvl, strides)])
        boxes, labels = gt_instances.bboxes, gt_instances.labels
        radius = self.center_sample_radius if self.center_sampling else 0.0
        index = center_sampling_assign(points, point_strides, regress_ranges, boxes, None, radius)
        out_labels = labels.new_full((points.shape[0],), self.num_classes)
        targets = points.new_zeros((points.shape[0], 4))
        pos = index >= 0
        if pos.any():
            out_labels[pos] = labels[index[pos]]
            b, p = boxes[index[pos]], points[pos]
            targets[pos] = torch.cat((p - b[:, :2], b[:, 2:] - p), 1)
        return out_labels, targets
