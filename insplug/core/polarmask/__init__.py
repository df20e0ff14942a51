"""PolarMask: instance masks as polar contours of rays from a centre (Xie et al., CVPR 2020)."""
