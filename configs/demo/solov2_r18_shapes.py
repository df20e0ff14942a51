# mmdet 3's SOLOv2 (SOLOv2 detector, SOLOV2Head + MaskFeatModule, Matrix NMS) on the bundled
# shapes set (CPU demo): ResNet-18 from scratch (trainable BN), FPN 64 (P2-P6), instance towers
# 2 x 64, mask features 32 -> 64. Shapes are small (256 px images): grids and scale ranges are
# scaled down from the official (40/36/24/16/12; 1-96 ... 384-2048); the rest is
# mmdet's solov2_r50_fpn_1x_coco.py (sigma 0.2, dice 3.0, focal, Matrix NMS test).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
gn = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    type='SOLOv2',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=True,
                           pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=64, start_level=0,
              num_outs=5),
    mask_head=dict(
        type='SOLOV2Head', num_classes=num_classes, in_channels=64, feat_channels=64,
        stacked_convs=2, strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 32), (16, 64), (32, 128), (64, 256), (128, 2048)),
        pos_scale=0.2, num_grids=[20, 16, 12, 8, 6], cls_down_index=0,
        mask_feature_head=dict(feat_channels=32, start_level=0, end_level=3, out_channels=64,
                               mask_stride=4, norm_cfg=gn),
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        norm_cfg=gn),
    test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05, kernel='gaussian',
                  sigma=2.0, max_per_img=50))

val_evaluator = dict(metric=['segm'])
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
