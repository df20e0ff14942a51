"""EmbedMask (Ying et al., 2019) for mmdet 3.x."""
