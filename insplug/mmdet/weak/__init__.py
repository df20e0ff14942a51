"""Weaker-supervision data path for mmdet: registered transforms and dataset options that load
only the weaker labels (image-level labels, counts, boxes without masks, a seen/unseen class
split) from an ordinary COCO-format set, so no separate dataset files are needed. Evaluation
still reads the full masks of the val set through the standard metric. One file per label kind.
"""
