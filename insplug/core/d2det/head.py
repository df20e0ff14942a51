"""D2Det's RoI head network (``D2DetHead`` of the release), framework-free.

Shapes: N RoIs; C input channels on R x R RoI features (official 14 x 14 RoIAlign); D conv
channels (release 576, GroupNorm 36 groups); S = R / 2 regression cells (7); K classes; the
instance masks are 4S x 4S (28).

* ``convs``: ``num_convs`` 3 x 3 conv + GN + ReLU (the first with stride 2, R -> S);
* ``reg_conv``: 3 x 3 conv -> (N, 4, S, S), ReLU: normalised l, r, t, b of every cell;
* ``overlap_conv``: 3 x 3 conv -> (N, 1, S, S) binary overlap logits;
* instance variant (``with_mask``): two stride-2 deconvs (GN 16 groups between) and a 3 x 3 conv
  -> (N, K, 4S, 4S) mask logits; the own-class mask's sigmoid (detached), max-pooled 4 x 4
  (stride 4, padding 1) back to S x S, is concatenated to the conv features and two FCs + a
  linear layer predict each class's mask IoU (N, K).

The release names ``D2Det_reg``, ``D2Det_mask``, ``D2Det_instance``, ``fcs``, ``fc_instance_iou``
(81 outputs with background at index 0; here K outputs, see the converter). In the release the
first conv's ``groups = 36`` for the later convs is computed but never passed: all convs are dense.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvGNReLU(nn.Module):
    """conv (no bias) -> GroupNorm -> ReLU; keys ``conv``, ``gn`` as mmcv's ConvModule."""

    def __init__(self, in_channels, out_channels, stride, num_groups):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.gn = nn.GroupNorm(num_groups, out_channels)

    def forward(self, x):
        return F.relu(self.gn(self.conv(x)))


class D2DetHeadNet(nn.Module):
    """Dense local regression (+ instance mask and mask-IoU) head.

    Args:
        in_channels: C (256).
        roi_feat_size: R (14).
        num_convs: 8 in the released mmdet 1.1 configs (1 in the mmdet 2.1 port's instance
            config).
        conv_channels: D (release 576). num_groups: GN groups of the convs (36).
        with_mask: the instance-segmentation variant (``MASK_ON``).
        num_classes: K.
        deconv_channels: 256; deconv_groups: GN groups after the first deconv (16).
        fc_channels: 1024; num_fcs: 2 (the mask-IoU branch).
    """

    def __init__(self, in_channels=256, roi_feat_size=14, num_convs=8, conv_channels=576,
                 num_groups=36, with_mask=True, num_classes=80, deconv_channels=256,
                 deconv_groups=16, fc_channels=1024, num_fcs=2):
        super().__init__()
        if roi_feat_size % 2:
            raise ValueError(f'roi_feat_size must be even, got {roi_feat_size}')
        self.roi_feat_size = roi_feat_size
        self.map_size = roi_feat_size // 2
        self.with_mask = with_mask
        self.num_classes = num_classes
        self.convs = nn.Sequential(*[
            ConvGNReLU(in_channels if i == 0 else conv_channels, conv_channels,
                       2 if i == 0 else 1, num_groups) for i in range(num_convs)])
        self.reg_conv = nn.Conv2d(conv_channels, 4, 3, padding=1)
        self.overlap_conv = nn.Conv2d(conv_channels, 1, 3, padding=1)
        if with_mask:
            self.deconv1 = nn.ConvTranspose2d(conv_channels, deconv_channels, 2, stride=2)
            self.deconv_norm = nn.GroupNorm(deconv_groups, deconv_channels)
            self.deconv2 = nn.ConvTranspose2d(deconv_channels, deconv_channels, 2, stride=2)
            self.mask_logits = nn.Conv2d(deconv_channels, num_classes, 3, padding=1)
            self.iou_fcs = nn.ModuleList(
                nn.Linear((conv_channels + 1) * self.map_size ** 2 if i == 0 else fc_channels,
                          fc_channels) for i in range(num_fcs))
            self.iou_fc = nn.Linear(fc_channels, num_classes)
        self.init_weights()

    def init_weights(self):
        """The release's ``init_weights`` (mmcv ``kaiming_init``: fan_out, relu, normal)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in (self.reg_conv, self.overlap_conv):
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)
        if self.with_mask:
            for m in (self.deconv1, self.deconv2):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                nn.init.zeros_(m.bias)
            for fc in self.iou_fcs:
                nn.init.kaiming_uniform_(fc.weight, a=1, mode='fan_in',
                                         nonlinearity='leaky_relu')
                nn.init.zeros_(fc.bias)
            nn.init.normal_(self.iou_fc.weight, std=0.01)
            nn.init.zeros_(self.iou_fc.bias)

    def forward(self, x):
        """x: (N, C, R, R) -> reg (N, 4, S, S) >= 0, overlap logits (N, 1, S, S), feats (N, D, S, S)."""
        if x.shape[-1] != self.roi_feat_size or x.shape[-2] != self.roi_feat_size:
            raise ValueError(f'D2DetHeadNet expects {self.roi_feat_size} x '
                             f'{self.roi_feat_size} RoI features, got {tuple(x.shape[-2:])}')
        feats = self.convs(x)
        return F.relu(self.reg_conv(feats)), self.overlap_conv(feats), feats

    def forward_mask(self, feats, labels):
        """Instance masks and mask IoUs.

        Args:
            feats: (N, D, S, S) from :meth:`forward`. labels: (N,) long in [0, K).

        Returns:
            mask_logits: (N, K, 4S, 4S); iou: (N, K).
        """
        y = F.relu(self.deconv_norm(self.deconv1(feats)))
        mask_logits = self.mask_logits(F.relu(self.deconv2(y)))
        own = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels].detach()
        own = F.max_pool2d(own[:, None], 4, 4, 1).sigmoid()
        z = torch.cat([feats, own], 1).flatten(1)
        for fc in self.iou_fcs:
            z = F.relu(fc(z))
        return mask_logits, self.iou_fc(z)
