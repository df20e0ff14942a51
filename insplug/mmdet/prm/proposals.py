"""Class-agnostic proposal sources for PRM / CountSeg retrieval (TASK_UTILS).

A source is called with the network input of one image (3, H, W, normalised), its data sample
and the data preprocessor, and returns (Q, H, W) bool proposals on the input grid.
"""
import json
import os.path as osp

from insplug.core.prm.proposals import colour_proposals_on_input_grid, file_proposals
from insplug.registry import TASK_UTILS


@TASK_UTILS.register_module()
class FileProposals:
    """Proposals read from a JSON file: ``{image file name: [COCO RLE, ...]}`` (best first, at
    the original image size, e.g. MCG / COB / selective-search output converted to RLE).

    Args:
        file: path of the JSON file.
        missing: 'error' or 'empty' for an image absent from the file.
    """

    def __init__(self, file, missing='error'):
        with open(file) as f:
            self.table = json.load(f)
        self.missing = missing

    def __call__(self, image, data_sample, data_preprocessor=None):
        meta = data_sample.metainfo
        return file_proposals(self.table, osp.basename(meta['img_path']), meta['ori_shape'][:2],
                              meta['img_shape'][:2], image.shape[-2:],
                              self.missing).to(image.device)


@TASK_UTILS.register_module()
class ColourRegionProposals:
    """Deterministic fallback: regions of equal quantised colour of the (de-normalised) input
    (``insplug.core.prm.proposals.colour_region_proposals``)."""

    def __init__(self, steps=(32, 48, 64), min_area=16, max_fraction=0.85, max_proposals=200):
        self.kwargs = dict(steps=steps, min_area=min_area, max_fraction=max_fraction,
                           max_proposals=max_proposals)

    def __call__(self, image, data_sample, data_preprocessor=None):
        img = image.detach().float()
        if data_preprocessor is not None and getattr(data_preprocessor, '_enable_normalize',
                                                     False):
            img = img * data_preprocessor.std.view(-1, 1, 1) + data_preprocessor.mean.view(
                -1, 1, 1)
        return colour_proposals_on_input_grid(img, data_sample.metainfo['img_shape'][:2],
                                              **self.kwargs)
