"""Class-agnostic proposal sources for PRM / CountSeg retrieval (TASK_UTILS).

A source is called with the network input of one image (3, H, W, normalised), its data sample
and the data preprocessor, and returns (Q, H, W) bool proposals on the input grid.
"""
import json
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from insplug.core.prm.proposals import colour_region_proposals
from insplug.registry import TASK_UTILS


def _to_input_grid(masks, data_sample, pad_shape):
    """(Q, h0, w0) masks of the original image -> (Q, H, W) on the padded input grid."""
    img_h, img_w = data_sample.metainfo['img_shape'][:2]
    out = torch.zeros((masks.shape[0],) + tuple(pad_shape), dtype=torch.bool)
    if masks.shape[0]:
        resized = F.interpolate(masks[:, None].float(), size=(img_h, img_w),
                                mode='nearest-exact')[:, 0] > 0.5
        out[:, :img_h, :img_w] = resized
    return out


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
        name = osp.basename(data_sample.metainfo['img_path'])
        if name not in self.table:
            if self.missing == 'error':
                raise KeyError(f'no proposals for {name} in the proposal file')
            return torch.zeros((0,) + tuple(image.shape[-2:]), dtype=torch.bool,
                               device=image.device)
        rles = self.table[name]
        masks = np.stack([mask_utils.decode(r) for r in rles]) if rles else \
            np.zeros((0,) + tuple(data_sample.metainfo['ori_shape'][:2]), np.uint8)
        return _to_input_grid(torch.from_numpy(masks.astype(bool)), data_sample,
                              image.shape[-2:]).to(image.device)


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
        img_h, img_w = data_sample.metainfo['img_shape'][:2]
        props = colour_region_proposals(img[:, :img_h, :img_w], **self.kwargs)
        out = torch.zeros((props.shape[0],) + tuple(image.shape[-2:]), dtype=torch.bool,
                          device=image.device)
        out[:, :img_h, :img_w] = props
        return out
