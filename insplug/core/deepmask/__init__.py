"""DeepMask (Pinheiro et al., NeurIPS 2015) with the SharpMask refinement (ECCV 2016), after
the official Torch7 release (facebookresearch/deepmask): class-agnostic mask proposals."""
from .head import DeepMaskHead, SharpMaskRefinement
from .inference import (gather_windows, paste_window_masks, pyramid_scales,
                        scaled_padded_image, select_top_windows, torch_image_scale_matrix)
from .loss import mask_loss, score_loss, soft_margin
from .model import DeepMaskNet, normalised_grey
from .sampling import (canonical_levels, crop_mask_targets, crop_windows, jitter_mask_windows,
                       label_regions, negative_score_windows, positive_score_windows)
from .trunk import DeepMaskResNetTrunk, SymmetricPadConv2d, symmetric_pad, use_symmetric_padding

__all__ = [
    'DeepMaskHead', 'SharpMaskRefinement', 'gather_windows', 'paste_window_masks',
    'pyramid_scales', 'scaled_padded_image', 'select_top_windows', 'torch_image_scale_matrix',
    'mask_loss', 'score_loss', 'soft_margin', 'DeepMaskNet', 'normalised_grey',
    'canonical_levels', 'crop_mask_targets', 'crop_windows', 'jitter_mask_windows',
    'label_regions', 'negative_score_windows', 'positive_score_windows', 'DeepMaskResNetTrunk',
    'SymmetricPadConv2d', 'symmetric_pad', 'use_symmetric_padding',
]
