"""CountSeg / ILC (Cholakkal et al., CVPR 2019): lower-count losses and density inference.

Peak finding, peak back-propagation and proposal retrieval are PRM's (``insplug.core.prm``).
"""
from .loss import (count_prediction, predicted_counts, ranking_loss, sample_absent_classes,
                   stage1_loss, stage2_loss, top_count_peak_mask)

__all__ = ['count_prediction', 'predicted_counts', 'ranking_loss', 'sample_absent_classes',
           'stage1_loss', 'stage2_loss', 'top_count_peak_mask']
