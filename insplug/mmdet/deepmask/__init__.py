"""DeepMask / SharpMask for MMDetection: a standalone proposal detector and an
``rpn_head``-compatible proposal generator for two-stage models."""
from .detector import DeepMask, DeepMaskMaskRCNN, DeepMaskRPNHead

__all__ = ['DeepMask', 'DeepMaskMaskRCNN', 'DeepMaskRPNHead']
