"""BoxCaseg in mmdet: the class-agnostic box-to-mask segmenter (``BoxCaseg``) and the HRNet
trunk with the release's bilinear fusion (``BilinearHRNet``)."""
from .boxcaseg import BoxCaseg
from .hrnet import BilinearHRNet

__all__ = ['BoxCaseg', 'BilinearHRNet']
