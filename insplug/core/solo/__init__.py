"""SOLO (Wang et al., ECCV 2020) and SOLOv2 (NeurIPS 2020), framework-free: branches, grid
targets, losses, inference with Matrix NMS (:mod:`insplug.core.postprocess.nms`)."""
from .branches import (ConvNormAct, MaskFeatBranch, SOLOInstanceBranch, SOLOv2InstanceBranch,
                       coordinate_features, resize_levels)
from .inference import (DEFAULT_TEST, flatten_levels, point_nms, postprocess_candidates,
                        solo_inference_single, solo_mask_probs, solov2_inference_single)
from .loss import DEFAULT_LOSS, dynamic_masks, positive_mask_logits, solo_losses, solov2_losses
from .targets import (SOLOV2_NUM_GRIDS, SOLOV2_SCALE_RANGES, SOLOV2_STRIDES, center_of_mass,
                      positive_cells, rescale_mask, solo_targets_single,
                      solo_v1_targets_single)

__all__ = [
    'ConvNormAct', 'MaskFeatBranch', 'SOLOInstanceBranch', 'SOLOv2InstanceBranch',
    'coordinate_features', 'resize_levels', 'DEFAULT_TEST', 'flatten_levels', 'point_nms',
    'postprocess_candidates',
    'solo_inference_single', 'solo_mask_probs', 'solov2_inference_single',
    'DEFAULT_LOSS', 'dynamic_masks', 'positive_mask_logits', 'solo_losses', 'solov2_losses',
    'SOLOV2_NUM_GRIDS', 'SOLOV2_SCALE_RANGES', 'SOLOV2_STRIDES', 'center_of_mass',
    'positive_cells', 'rescale_mask', 'solo_targets_single', 'solo_v1_targets_single'
]
