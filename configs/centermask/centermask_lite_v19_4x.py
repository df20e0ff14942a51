# CenterMask-Lite with the VoVNetV2-19 (eSE) backbone, multi-scale 4x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml
# (+ Base-CenterMask-Lite-VoVNet.yaml), released model centermask2-lite-V-19-eSE-FPN-ms-4x.pth
# (mask AP 32.8, box AP 35.9): FPN 128 wide, FCOS towers of 2 convs, SAG-Mask and MaskIoU heads
# of 2 convs 128 wide; shorter side 580/600 (max 1000) in training, 600 (max 1000) at test;
# 4x: MAX_ITER 360000, STEPS (300000, 340000) at batch 16.
# ImageNet weights: vovnet19_ese_detectron2.pth, converted with `tools/convert_checkpoint.py
# vovnet_imagenet ... checkpoints/vovnet19_ese_insplug.pth`.
_base_ = './centermask_v39_3x.py'
model = dict(
    backbone=dict(arch='V-19', init_cfg=dict(checkpoint='checkpoints/vovnet19_ese_insplug.pth')),
    neck=dict(out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128, stacked_convs=2),
    roi_head=dict(in_channels=128, conv_channels=128, num_convs=2, maskiou_conv_channels=128,
                  maskiou_num_convs=2))
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='RandomChoiceResize', scales=[(1000, 580), (1000, 600)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_iters = 360000
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[300000, 340000], gamma=0.1),
]
