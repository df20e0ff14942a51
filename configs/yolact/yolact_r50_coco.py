# YOLACT, ResNet-50-FPN, 550 x 550, COCO: the release's yolact_resnet50_config
# (dbolya/yolact data/config.py; train.py / eval.py defaults).
# Official checkpoint yolact_resnet50_54_800000.pth: 28.2 mask AP on COCO test-dev.
# Data: SSDAugmentation (photometric distort, expand x1-4, random sample crop, mirror, resize to
# 550 x 550 without keeping the aspect ratio, boxes <= 4 px dropped); crowds are kept as ignored
# instances (neutral anchors at crowd IoU > 0.7). Schedule: SGD lr 1e-3, momentum 0.9, weight
# decay 5e-4, batch 8 (1 GPU), 800k iterations, lr x0.1 at 280k / 600k / 700k / 750k, linear
# warm-up from 1e-4 over 500 iterations.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './yolact_protonet_r50_fpn_base.py',
]
img_scale = 550
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # augment_photometric_distort (brightness 32, contrast / saturation 0.5-1.5, hue 18)
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    # augment_expand: p = 0.5, ratio 1-4, filled with the mean
    dict(type='Expand', mean=[123.68, 116.78, 103.94], to_rgb=True, ratio_range=(1, 4),
         prob=0.5),
    # augment_random_sample_crop: modes (none, IoU 0.1, 0.3, 0.7, 0.9, any), crop 0.3-1
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.7, 0.9), min_crop_size=0.3),
    dict(type='RandomFlip', prob=0.5),       # augment_random_mirror
    dict(type='Resize', scale=(img_scale, img_scale), keep_ratio=False),
    # discard_box_width / height = 4 / 550 (after the resize)
    dict(type='FilterAnnotations', min_gt_bbox_wh=(4.0, 4.0), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(img_scale, img_scale), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=4,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 800000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=50000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[280000, 600000, 700000, 750000], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=50000))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
