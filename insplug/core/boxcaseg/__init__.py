"""BoxCaseg (Wang et al., CVPR 2021): class-agnostic box-to-mask segmentation learned jointly
from box-annotated crops (MIL projection + pairwise losses) and salient images (pixel labels);
its masks become pseudo masks that train a standard Mask R-CNN. One module per step:

- ``loss``: the release's box-level and salient losses.
- ``crops``: the release's box jitter, batched crops and box-in-crop targets.
- ``network``: the segmentation head (weak branch, FCN branch, weight-transfer branch).
- ``inference``: per-crop normalisation, pasting, and the release's pseudo-mask merge.
- ``salient``: single-object salient crops cut from a COCO-format set (the shapes set here).
"""
