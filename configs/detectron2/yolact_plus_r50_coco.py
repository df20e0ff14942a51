# YOLACT++, ResNet-50-FPN with DCNv2 in every block of res3-res5, 550 px, COCO (the release's
# yolact_plus_resnet50_config) as a detectron2 LazyConfig; the same values as
# configs/yolact/yolact_plus_r50_coco.py (mmdet) and yolact_plus_r50_coco.yaml: three prior
# scales per octave, non-square priors, the fast mask-IoU net. The deformable convs run on
# CPU too (insplug.detectron2.deform_conv).
from detectron2.config import LazyCall as L

from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet
from insplug.detectron2.yolact import make_resnet_stages

from .yolact_r50_coco import (  # noqa: F401
    dataloader, lr_multiplier, model, num_classes, optimizer, train)

model.backbone.stages = L(make_resnet_stages)(
    depth=50, stride_in_1x1=False, norm='BN', deform_on_per_stage=[False, True, True, True],
    deform_modulated=True, deform_num_groups=1)
model.head.prior_scales = [[s * 2 ** (j / 3.0) for j in range(3)] for s in (24, 48, 96, 192, 384)]
model.head.square_anchors = False
model.mask_iou_net = L(FastMaskIoUNet)(num_classes=num_classes)
