"""SOLOv2 (Wang et al., NeurIPS 2020), framework-free: branches, grid targets, losses,
inference with Matrix NMS (:mod:`insplug.core.postprocess.nms`)."""
from .branches import (ConvNormAct, MaskFeatBranch, SOLOv2InstanceBranch, coordinate_features,
                       resize_levels)
from .inference import DEFAULT_TEST, flatten_levels, point_nms, solov2_inference_single
from .loss import DEFAULT_LOSS, dynamic_masks, positive_mask_logits, solov2_losses
from .targets import (SOLOV2_NUM_GRIDS, SOLOV2_SCALE_RANGES, SOLOV2_STRIDES, center_of_mass,
                      rescale_mask, solo_targets_single)

__all__ = [
    'ConvNormAct', 'MaskFeatBranch', 'SOLOv2InstanceBranch', 'coordinate_features',
    'resize_levels', 'DEFAULT_TEST', 'flatten_levels', 'point_nms', 'solov2_inference_single',
    'DEFAULT_LOSS', 'dynamic_masks', 'positive_mask_logits', 'solov2_losses',
    'SOLOV2_NUM_GRIDS', 'SOLOV2_SCALE_RANGES', 'SOLOV2_STRIDES', 'center_of_mass',
    'rescale_mask', 'solo_targets_single'
]
