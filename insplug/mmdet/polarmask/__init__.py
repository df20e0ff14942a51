"""PolarMask (Xie et al., CVPR 2020) for mmdet 3.x."""
