# SparseInst demo: ResNet-18 (random init, nothing is downloaded), slim G-IAM decoder,
# trained on CPU on the bundled shapes set (python -m insplug.datasets.shapes --out data/shapes).
# Differences from configs/sparseinst/sparseinst_r50_giam.py, all for a from-scratch CPU run:
# GroupNorm in the backbone (frozen random BN would be meaningless, and BN running statistics
# of a network trained from scratch on 2-image batches lag far behind its weights, so eval-mode
# masks were much worse than train-mode ones), narrower encoder and
# decoder (64 channels, 2 convs per branch), 20 instance slots (images hold <= 6 shapes),
# single-scale 128 px input (the 256 px images downscaled x2: 4x cheaper iterations, so a CPU
# test can afford the ~40 epochs a from-scratch query-based model needs to fit the shapes;
# masks are evaluated at the original 256 px), AdamW lr 1e-3, gradient clipping (max norm 10).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]

num_classes = 5
model = dict(
    type='SparseInst',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    encoder=dict(
        type='InstanceContextEncoder',
        in_channels=[128, 256, 512],
        out_channels=64),
    decoder=dict(
        type='IAMDecoder',
        in_channels=64,
        num_classes=num_classes,
        num_masks=20,
        iam_type='group',
        groups=4,
        inst_dim=64,
        inst_convs=2,
        mask_dim=64,
        mask_convs=2,
        kernel_dim=32,
        scale_factor=2.0),
    criterion=dict(type='SparseInstCriterion', num_classes=num_classes),
    test_cfg=dict(score_thr=0.005, mask_thr_binary=0.45, max_per_img=100))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[1500, 1800], gamma=0.1),
]
image_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500))
log_processor = dict(by_epoch=False)
