# CPU demo of FCIS on the bundled shapes set (256 px, 5 classes): ResNet-18 from scratch with a
# dilated last stage (stride 16, as the release's ResNet-101), a narrow conv_new_1 (128) and
# RPN (128); everything else is the release's method: 7 x 7 inside/outside maps pooled 21 x 21,
# class-agnostic PS boxes, OHEM 128 RoIs, loss weights 1/10/1, two test iterations and mask
# voting. Objects are 10-150 px: anchors of 32-256 px (scales 2-16 of 16).
# Prepare the data with:  python -m insplug.datasets.shapes --out data/shapes
_base_ = [
    '../fcis/fcis_r101_base.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    backbone=dict(depth=18, frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch', init_cfg=None),
    rpn_head=dict(in_channels=256, feat_channels=128,
                  anchor_generator=dict(scales=[2, 4, 8, 16])),
    roi_head=dict(in_channels=512, num_classes=num_classes, mid_channels=128),
    # 100 proposals (300 in the release): at most ~10 objects per image here
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=100)),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=100)))

train_dataloader = dict(batch_size=4, num_workers=2)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2),
    paramwise_cfg=dict(custom_keys={'roi_head.head.conv_new_1': dict(lr_mult=3.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
