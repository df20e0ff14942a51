# CenterMask on the bundled shapes set (CPU demo): half-width ResNet-18 (base_channels=32) from
# scratch, narrow FPN (P3-P6) and heads; regress ranges halved for the 256 px images. The MaskIoU
# FCs keep the official width 1024: with centermask2's MSRA (fan-out) FC init a 256-wide FC
# starts 2x larger and the MaskIoU loss spiked (up to 17.6) in 40-iteration fits at lr 0.01.
_base_ = [
    '../centermask/centermask_r50_fpn_base.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch', init_cfg=None),
    neck=dict(in_channels=[64, 128, 256], out_channels=64, num_outs=4),
    bbox_head=dict(num_classes=num_classes, in_channels=64, feat_channels=64, stacked_convs=2,
                   strides=[8, 16, 32, 64],
                   regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)),
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    roi_head=dict(num_classes=num_classes, in_channels=64, conv_channels=64, num_convs=2,
                  maskiou_conv_channels=64, max_pos_per_img=32),
    train_cfg=dict(proposal=dict(nms_pre=300, max_per_img=30)),
    test_cfg=dict(nms_pre=300, max_per_img=50))
train_dataloader = dict(batch_size=4, num_workers=2)
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
