"""FCIS (Li et al., CVPR 2017) as an mmdet two-stage detector."""
from .detector import FCIS, FCISRPNHead
from .roi_head import FCISRoIHead

__all__ = ['FCIS', 'FCISRPNHead', 'FCISRoIHead']
