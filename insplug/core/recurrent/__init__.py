"""Shared recurrent instance-segmentation blocks: ConvLSTM cell, soft-IoU Hungarian matching."""
from .convlstm import ConvLSTMCell, lstm_gates_update, zero_state
from .matching import (match_soft_iou, matched_soft_iou_loss, paired_soft_iou,
                       pairwise_soft_iou)

__all__ = ['ConvLSTMCell', 'lstm_gates_update', 'zero_state', 'pairwise_soft_iou',
           'paired_soft_iou', 'match_soft_iou', 'matched_soft_iou_loss']
