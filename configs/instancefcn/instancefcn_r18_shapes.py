# InstanceFCN on the bundled shapes set (CPU demo): quarter-width ResNet-18 from scratch
# (trainable BN), dilated to stride 8 (128 channels), k = 3, windows of m = 9 cells (72 px),
# canonical object side 41 px (+- half an octave); shapes are 10-128 px in 256-px images, so
# the pyramid is 2^-1.5 .. 2^0.5 (step 0.5) for training and inference.
# Evaluation: class-agnostic proposal AR (COCO useCats=0 on the boxes of the masks).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
_scales = tuple(2.0 ** (e / 2) for e in range(-3, 2))
model = dict(
    type='InstanceFCN',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=False,
                           pad_size_divisor=8),
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4,
                  strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), out_indices=(3,),
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch'),
    stride=8,
    head=dict(in_channels=128, feat_channels=64, k=3, window=9),
    train_cfg=dict(scales=_scales, num_samples=64, pos_fraction=0.5, mask_weight=1.0,
                   obj_ratio=128 / 224, center_shift=16 / 224, scale_tolerance=2 ** 0.5),
    test_cfg=dict(scales=_scales, pre_nms=100, mask_thr=0.5, nms_iou=0.8, max_per_img=100))
val_evaluator = dict(metric=['proposal'], proposal_nums=(10, 100))
test_evaluator = val_evaluator
train_dataloader = dict(batch_size=4, num_workers=2)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=35, norm_type=2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
