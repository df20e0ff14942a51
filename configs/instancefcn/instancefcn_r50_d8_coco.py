# InstanceFCN (Dai et al., ECCV 2016) at the paper's setting. No official code was released;
# values from the paper (arXiv 1603.08678), open details in docs/deviations/instancefcn.md.
# Paper: VGG-16 (ImageNet), pool4 stride removed and conv5 dilated -> stride-8 features;
# instance branch 1x1 conv 512 + 3x3 conv -> k*k = 25 maps (k = 5), objectness branch 3x3 conv
# 512 + 1x1 conv; windows of m = 21 cells; 256 sampled windows per image (1:1); logistic
# losses; image pyramid 1.5^{-4..1} around a 600-px shorter side; NMS on the proposals.
# Deviation: mmdet has no VGG-16 backbone; a dilated ResNet-50 (stride 8, 2048 channels)
# stands in for it (the trunk is not part of the method).
_base_ = [
    '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='InstanceFCN',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=False,
                           pad_size_divisor=8),
    backbone=dict(type='ResNet', depth=50, num_stages=4, strides=(1, 2, 1, 1),
                  dilations=(1, 1, 2, 4), out_indices=(3,), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True,
                  style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    stride=8,
    head=dict(in_channels=2048, feat_channels=512, k=5, window=21),
    train_cfg=dict(scales=tuple(1.5 ** e for e in range(-4, 2)), num_samples=256,
                   pos_fraction=0.5, mask_weight=1.0, obj_ratio=128 / 224,
                   center_shift=16 / 224, scale_tolerance=1.5 ** 0.5),
    test_cfg=dict(scales=tuple(1.5 ** e for e in range(-4, 2)), pre_nms=1000, mask_thr=0.5,
                  nms_iou=0.8, max_per_img=1000))

backend_args = None
# shorter side 600 (the pyramid scales are relative to it), horizontal flips
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),
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
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# class-agnostic segment proposals: the paper reports segment AR@10/100/1000 (COCO: mask AR);
# COCO proposal AR here is on the boxes of the masks (useCats=0)
val_evaluator = dict(metric=['proposal'], proposal_nums=(10, 100, 1000))
test_evaluator = val_evaluator

# SGD lr 1e-3 for 32k iterations then 1e-4 for 8k, momentum 0.9, wd 5e-4, one image per GPU,
# 8 GPUs (the paper's schedule: 40k iterations of 8 images)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[32000], gamma=0.1)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
