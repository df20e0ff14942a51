"""RefineMask's mmdet 3.x adapters: ``RefineMaskHead`` and ``RefineRoIHead`` (insplug scope)."""
from .mask_head import RefineMaskHead
from .roi_head import RefineRoIHead

__all__ = ['RefineMaskHead', 'RefineRoIHead']
