"""InstanceFCN (Dai et al., ECCV 2016): k x k instance-sensitive score maps, the assembling
module, an objectness branch, window targets / loss, and dense multi-scale inference.

No official code was released; everything follows the paper (arXiv 1603.08678) and is
documented in docs/deviations/instancefcn.md where the paper leaves a detail open.
"""
from .head import InstanceFCNHead
from .inference import propose, select_windows, window_boxes
from .loss import instancefcn_loss, sample_windows
from .model import (DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG, batch_loss, batch_proposals,
                    resize_batch)
from .targets import cell_masks, window_assignment, window_mask_targets

__all__ = ['InstanceFCNHead', 'propose', 'select_windows', 'window_boxes', 'instancefcn_loss',
           'sample_windows', 'cell_masks', 'window_assignment', 'window_mask_targets',
           'DEFAULT_TRAIN_CFG', 'DEFAULT_TEST_CFG', 'batch_loss', 'batch_proposals', 'resize_batch']
