# BlendMask on the bundled shapes set (CPU demo): ResNet-18 from scratch, narrow FPN and heads,
# P3-P6 (256 px images). Same bottom module / blender / losses as the full model; the blender
# resolution is kept at 56 and the attention at 14 x 14 (the paper's values).
_base_ = [
    '../blendmask/blendmask_r50_fpn_base.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    backbone=dict(depth=18, frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64, start_level=1, num_outs=4),
    bbox_head=dict(num_classes=num_classes, in_channels=64, feat_channels=64, stacked_convs=2,
                   strides=[8, 16, 32, 64], sizes_of_interest=(32, 64, 128),
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    mask_head=dict(num_classes=num_classes, semantic_in_channels=64, semantic_feat_channels=32,
                   bottom_module=dict(in_channels=64, feat_channels=32)),
    test_cfg=dict(nms_pre=300, max_per_img=50))
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='ThingSemanticMap'),  # AdelaiDet's thing map: all annotations, later wins
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=2, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
                     paramwise_cfg=dict(norm_decay_mult=0.0),
                     clip_grad=dict(max_norm=35, norm_type=2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
