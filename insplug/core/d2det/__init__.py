"""D2Det (Cao et al., CVPR 2020): dense local regression, discriminative RoI pooling and the
released instance-segmentation mask branch (framework-free)."""
from .dense_reg import (average_boxes, box_overlap_map, cell_centres, decode_dense,
                        decode_targets, dense_targets, jitter_boxes, mask_overlap_map)
from .head import D2DetHeadNet
from .pipeline import (LOSS_WEIGHTS, dense_losses, instance_masks, refine_boxes,
                       sample_regression_rois)
from .loss import (aligned_iou, dense_iou_loss, instance_mask_loss, mask_area_ratios,
                   mask_iou_loss, mask_iou_targets, mask_scores, overlap_loss)
from .pooling import (DiscriminativeRoIPool, adaptive_weighted_pool, deform_psroi_pool,
                      pool_levels, roi_levels)

__all__ = [
    'LOSS_WEIGHTS', 'dense_losses', 'instance_masks', 'refine_boxes', 'sample_regression_rois',
    'D2DetHeadNet', 'DiscriminativeRoIPool', 'adaptive_weighted_pool', 'aligned_iou',
    'average_boxes', 'box_overlap_map', 'cell_centres', 'decode_dense', 'decode_targets',
    'deform_psroi_pool', 'dense_iou_loss', 'dense_targets', 'instance_mask_loss',
    'jitter_boxes', 'mask_area_ratios', 'mask_iou_loss', 'mask_iou_targets', 'mask_overlap_map',
    'mask_scores', 'overlap_loss', 'pool_levels', 'roi_levels'
]
