"""Zero-shot instance segmentation (Zheng et al., CVPR 2021) in mmdet: a Mask R-CNN whose RPN,
box classifier and mask classifier score against class embeddings (the maths is
:mod:`insplug.core.zsi`)."""
