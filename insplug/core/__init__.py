"""Framework-free PyTorch: layers, losses, matchers and post-processing of each method.

Nothing under ``insplug.core`` imports mmdet, mmengine, mmcv or detectron2.
"""
