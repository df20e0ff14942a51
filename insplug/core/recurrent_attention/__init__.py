"""Recurrent attention (Ren & Zemel, "End-to-End Instance Segmentation with Recurrent
Attention", CVPR 2017), framework-free: attention window (attention.py), network (network.py),
losses and matching (loss.py), resizing and instance output (inference.py)."""
from .attention import (attention_filters, box_corners, extract_patch, gaussian_filter_bank,
                        gt_boxes_from_masks, normalize_attention, normalized_log_var,
                        paste_patch, soft_attention_box, unnormalize_attention)
from .inference import instances_from_steps, masks_to_input, resize_to_input, stop_mask
from .loss import (corner_box_iou, cumulative_max_reversed, cumulative_min, greedy_match,
                   knob_probability,
                   match_steps, match_targets, matched_iou_loss, recurrent_attention_losses,
                   score_loss)
from .network import RecurrentAttentionNet

__all__ = ['gaussian_filter_bank', 'extract_patch', 'paste_patch', 'attention_filters',
           'unnormalize_attention', 'normalize_attention', 'normalized_log_var', 'box_corners',
           'soft_attention_box', 'gt_boxes_from_masks', 'RecurrentAttentionNet',
           'match_steps', 'matched_iou_loss', 'score_loss', 'cumulative_min',
           'cumulative_max_reversed', 'match_targets', 'greedy_match', 'corner_box_iou',
           'knob_probability',
           'recurrent_attention_losses', 'resize_to_input', 'masks_to_input', 'stop_mask',
           'instances_from_steps']
