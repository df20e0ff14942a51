"""``FCISRoIHead``: the FCIS head of :mod:`insplug.core.fcis` behind mmdet's RoI-head interface.

The maths (targets, OHEM, losses, the second iteration, mask voting) is the core's
(:mod:`insplug.core.fcis.pipeline`); here: box conventions (mmdet boxes are pixel edges, the
release's inclusive pixels: gt ``x2 - 1`` in, voted ``x2 + 1`` out), labels (mmdet 0..C-1,
the release 1..C with background 0) and rescaling to the original image.
"""
import torch
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.model import BaseModule
from mmengine.structures import InstanceData

from insplug.core.fcis import (FCISHeadNet, fcis_predict_image, fcis_roi_outputs,
                               fcis_train_step)
from insplug.registry import MODELS


def gt_masks_tensor(masks, device):
    """(G, H, W) float of an mmdet masks object (bitmaps or polygons)."""
    if isinstance(masks, PolygonMasks):
        masks = masks.to_bitmap()
    if isinstance(masks, BitmapMasks):
        return torch.as_tensor(masks.masks, device=device).float()
    return masks.to(device).float()


def inclusive_boxes(boxes):
    """Pixel-edge (x1, y1, x2, y2) -> the release's inclusive boxes (x2 - 1, y2 - 1)."""
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:] - 1, boxes[:, :2])], 1)


@MODELS.register_module()
class FCISRoIHead(BaseModule):
    """FCIS head (release defaults: 1024 mid channels, 7 x 7 groups pooled 21 x 21, stride 16,
    class-agnostic boxes).

    Args:
        in_channels: C5 channels.
        num_classes: foreground classes (the release's K - 1).
        mid_channels, group_size, pooled_size, featmap_stride: the head's geometry.
        in_index: backbone output the head reads (-1: the last, the dilated C5).
        train_cfg: keys of :data:`insplug.core.fcis.TRAIN_DEFAULTS`.
        test_cfg: keys of :data:`insplug.core.fcis.TEST_DEFAULTS`.
    """
    # mmdet's TwoStageDetector asks these
    with_bbox = True
    with_mask = True
    with_shared_head = False

    def __init__(self, in_channels=2048, num_classes=80, mid_channels=1024, group_size=7,
                 pooled_size=21, featmap_stride=16, in_index=-1, train_cfg=None,
                 test_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.pooled_size = pooled_size
        self.spatial_scale = 1.0 / featmap_stride
        self.in_index = in_index
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.head = FCISHeadNet(in_channels, num_classes + 1, mid_channels, group_size)

    def forward(self, x, rpn_results_list, batch_data_samples=None):
        """Tensor mode: the first-iteration outputs (cls, seg, box) for the proposals."""
        maps = self.head(x[self.in_index])
        rois = torch.cat([torch.cat([r.bboxes.new_full((len(r), 1), i), r.bboxes], 1)
                          for i, r in enumerate(rpn_results_list)])
        return fcis_roi_outputs(*maps, rois, self.num_classes + 1, 2, self.head.group_size,
                                self.pooled_size, self.spatial_scale)

    def loss(self, x, rpn_results_list, batch_data_samples):
        feat = x[self.in_index]
        gts = [s.gt_instances for s in batch_data_samples]
        boxes = [inclusive_boxes(g.bboxes.tensor if hasattr(g.bboxes, 'tensor') else g.bboxes)
                 for g in gts]
        return fcis_train_step(self.head, feat, [r.bboxes for r in rpn_results_list], boxes,
                               [g.labels + 1 for g in gts],
                               [gt_masks_tensor(g.masks, feat.device) for g in gts],
                               self.pooled_size, self.spatial_scale, self.train_cfg)

    def predict(self, x, rpn_results_list, batch_data_samples, rescale=False):
        maps = self.head(x[self.in_index])
        results = []
        for i, (res, sample) in enumerate(zip(rpn_results_list, batch_data_samples)):
            meta = sample.metainfo
            scale = tuple(meta['scale_factor'][:2]) if rescale else (1.0, 1.0)
            out_hw = meta['ori_shape'][:2] if rescale else meta['img_shape'][:2]
            boxes, scores, labels, masks = fcis_predict_image(
                self.head, tuple(m[i:i + 1] for m in maps), res.bboxes, meta['img_shape'][:2],
                out_hw, scale, self.pooled_size, self.spatial_scale, self.test_cfg)
            out = InstanceData()
            out.bboxes = torch.cat([boxes[:, :2], boxes[:, 2:] + 1], 1)  # -> pixel edges
            out.scores = scores.float()
            out.labels = labels - 1
            out.masks = masks
            results.append(out)
        return results
