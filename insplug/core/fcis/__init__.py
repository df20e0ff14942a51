"""FCIS (Li et al., CVPR 2017) in plain PyTorch, following the msracver/FCIS release: the
position-sensitive inside/outside head, RoI targets, OHEM losses, two-iteration inference and
mask voting."""
from .boxes import clip_boxes, legacy_box_decode, legacy_box_encode, legacy_box_iou
from .head import FCISHeadNet, fcis_roi_outputs, pick_class, inference_probs
from .inference import (keep_min_size, mask_voting, parse_boxes, paste_cv2,
                        render_binary_masks, select_detections, voted_boxes_and_masks)
from .loss import fcis_losses, ohem_select, per_roi_losses, smooth_l1
from .pipeline import TEST_DEFAULTS, TRAIN_DEFAULTS, fcis_predict_image, fcis_train_step
from .targets import cv2_linear_coords, fcis_roi_targets, roi_mask_targets

__all__ = [
    'clip_boxes', 'legacy_box_decode', 'legacy_box_encode', 'legacy_box_iou', 'FCISHeadNet',
    'fcis_roi_outputs', 'pick_class', 'inference_probs', 'keep_min_size', 'mask_voting',
    'parse_boxes', 'paste_cv2', 'render_binary_masks', 'select_detections',
    'voted_boxes_and_masks', 'fcis_losses', 'ohem_select', 'per_roi_losses', 'smooth_l1',
    'cv2_linear_coords', 'fcis_roi_targets', 'roi_mask_targets', 'TEST_DEFAULTS',
    'TRAIN_DEFAULTS', 'fcis_predict_image', 'fcis_train_step'
]
