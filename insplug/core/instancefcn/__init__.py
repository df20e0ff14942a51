"""InstanceFCN (Dai et al., ECCV 2016): k x k instance-sensitive score maps, the assembling
module, an objectness branch, window targets / loss, dense multi-scale inference, and the
optional segment classifier (MNC's stage 3) that turns the proposals into class-aware
instances.

No official code was released; everything follows the paper (arXiv 1603.08678) and is
documented in docs/deviations/instancefcn.md where the paper leaves a detail open.
"""
from .classifier import (DEFAULT_CLS_TEST_CFG, DEFAULT_CLS_TRAIN_CFG, SegmentClassifier,
                         classifier_loss, classifier_targets, classify_segments,
                         sample_segments, segment_mask_inputs)
from .head import InstanceFCNHead
from .inference import propose, select_windows, window_boxes
from .loss import instancefcn_loss, sample_windows
from .model import (DEFAULT_TEST_CFG, DEFAULT_TRAIN_CFG, batch_loss, batch_proposals,
                    classifier_batch_loss, classify_batch, resize_batch)
from .targets import cell_masks, window_assignment, window_mask_targets

__all__ = ['InstanceFCNHead', 'propose', 'select_windows', 'window_boxes', 'instancefcn_loss',
           'sample_windows', 'cell_masks', 'window_assignment', 'window_mask_targets',
           'DEFAULT_TRAIN_CFG', 'DEFAULT_TEST_CFG', 'batch_loss', 'batch_proposals', 'resize_batch',
           'SegmentClassifier', 'DEFAULT_CLS_TRAIN_CFG', 'DEFAULT_CLS_TEST_CFG', 'classifier_loss',
           'classifier_targets', 'classify_segments', 'sample_segments', 'segment_mask_inputs',
           'classifier_batch_loss', 'classify_batch']
