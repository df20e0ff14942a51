# YOLACT++, ResNet-50-FPN with DCNv2 in every block of stages 3-5, 550 x 550, COCO: the
# release's yolact_plus_resnet50_config. Official checkpoint yolact_plus_resnet50_54_800000.pth:
# 34.1 mask AP on COCO test-dev.
# Differences from YOLACT: 3 scales per octave (24 * 2^(j/3)), non-square priors
# (use_square_anchors=False), fast mask-IoU net (weight 25, GT area > 25 grid pixels) whose
# prediction rescales the *mask* score only (rescore_mask=True, rescore_bbox=False).
_base_ = './yolact_r50_coco.py'
model = dict(
    backbone=dict(dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
                  stage_with_dcn=(False, True, True, True)),
    bbox_head=dict(
        prior_scales=[[s * 2 ** (j / 3.0) for j in range(3)] for s in (24, 48, 96, 192, 384)],
        square_anchors=False),
    mask_head=dict(with_mask_iou=True, loss_mask_iou_weight=25.0, discard_mask_area=25),
    test_cfg=dict(rescore_bbox=False))
