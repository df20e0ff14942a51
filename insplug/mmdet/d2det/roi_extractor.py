"""``DiscriminativeRoIExtractor``: mmdet's ``SingleRoIExtractor`` with mmdet 1.x geometry and
D2Det's discriminative RoI pooling as the per-level layer.

``roi_layer=dict(type='DiscriminativeRoIPool', ...)`` builds one
:class:`insplug.core.d2det.DiscriminativeRoIPool` per level (own offset predictor and weights per
level, as the release's ``DeformRoIPoolingPack``); any other type is an mmcv op as in
``SingleRoIExtractor`` (e.g. the 14 x 14 ``RoIAlign`` of the dense-regression branch).

``legacy_plus_one`` (default True, the release): RoIs go to the level of
``sqrt((x2 - x1 + 1) (y2 - y1 + 1))`` as in mmdet 1.x, and mmcv ops see ``x2 + 1, y2 + 1`` (mmdet
1.x's RoIAlign spans ``x1 .. x2 + 1``); the discriminative pooling applies the release's own
geometry itself.
"""
import torch
import torch.nn as nn
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

from insplug.core.d2det import DiscriminativeRoIPool, pool_levels, roi_levels
from insplug.registry import MODELS


@MODELS.register_module()
class DiscriminativeRoIExtractor(SingleRoIExtractor):
    """SingleRoIExtractor with D2Det's pooling layers and mmdet 1.x box geometry."""

    def __init__(self, roi_layer, out_channels, featmap_strides, finest_scale=56,
                 legacy_plus_one=True, init_cfg=None):
        self.legacy_plus_one = legacy_plus_one
        self._pool_channels = out_channels  # build_roi_layers runs before out_channels is set
        super().__init__(roi_layer, out_channels, featmap_strides, finest_scale, init_cfg)

    def build_roi_layers(self, layer_cfg, featmap_strides):
        cfg = dict(layer_cfg)
        if cfg.get('type') != 'DiscriminativeRoIPool':
            self._mmcv_layer = True
            return super().build_roi_layers(layer_cfg, featmap_strides)
        self._mmcv_layer = False
        cfg.pop('type')
        return nn.ModuleList(
            DiscriminativeRoIPool(spatial_scale=1.0 / s, out_channels=self._pool_channels, **cfg)
            for s in featmap_strides)

    def map_roi_levels(self, rois, num_levels):
        return roi_levels(rois, num_levels, self.finest_scale, self.legacy_plus_one)

    def forward(self, feats, rois, roi_scale_factor=None):
        rois = rois.type_as(feats[0])
        levels = self.map_roi_levels(rois, len(feats))
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        if self.legacy_plus_one and self._mmcv_layer:
            rois = torch.cat([rois[:, :3], rois[:, 3:5] + 1], 1)
        return pool_levels(self.roi_layers[:len(feats)], feats, rois, levels, self.out_channels,
                           self.roi_layers[0].output_size)
