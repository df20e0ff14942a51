"""BlendMask (Chen et al., CVPR 2020): blender, mask and semantic losses, semantic head."""
