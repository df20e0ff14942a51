"""D2Det in mmdet 3.x: discriminative RoI extractor, dense-regression head, RoI head."""
from .roi_extractor import DiscriminativeRoIExtractor
from .head import D2DetRegMaskHead
from .roi_head import D2DetStandardRoIHead

__all__ = ['DiscriminativeRoIExtractor', 'D2DetRegMaskHead', 'D2DetStandardRoIHead']
