# YOLACT, ResNet-101-FPN, 550 x 550, COCO: the release's yolact_base_config.
# Official checkpoint yolact_base_54_800000.pth: 29.8 mask AP on COCO test-dev.
_base_ = './yolact_r50_coco.py'
model = dict(backbone=dict(depth=101,
                           init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
