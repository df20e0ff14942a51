"""RefineMask (Zhang et al., CVPR 2021) in plain PyTorch: boundary bands, SFM stages, the mask
network with its semantic branch, the boundary-aware refinement loss and inference."""
from .boundary import boundary_band, resize_binary
from .inference import merge_stage_logits, paste_masks_in_image, refine_stage_logits
from .loss import (refinement_band, refinement_loss, refinement_losses, semantic_loss,
                   semantic_target)
from .mask_head import RefineMaskNet
from .semantic_head import SemanticBranch
from .sfm import MultiBranchFusion, SFMStage

__all__ = [
    'boundary_band', 'resize_binary', 'merge_stage_logits', 'paste_masks_in_image',
    'refine_stage_logits', 'refinement_band', 'refinement_loss', 'refinement_losses',
    'semantic_loss', 'semantic_target', 'RefineMaskNet', 'SemanticBranch', 'MultiBranchFusion',
    'SFMStage'
]
