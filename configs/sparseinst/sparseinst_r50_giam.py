# SparseInst, ResNet-50, G-IAM (4 groups), COCO: the official `sparse_inst_r50_giam.yaml`
# schedule (hustvl/SparseInst, Base-SparseInst.yaml): AdamW lr 5e-5, weight decay 0.05
# (0 on norm layers), 64 images per batch (8 GPUs x 8), 270k iterations, lr x0.1 at 210k
# and 250k, detectron2's default 1k-iteration linear warm-up, multi-scale training with the
# short side in 416..640 (step 32, long side <= 853), testing at short side 640.
# Backbone: torchvision ResNet-50 with frozen BN statistics and affine (detectron2 FrozenBN),
# no frozen stage (FREEZE_AT 0).
# Official checkpoints (README "Fast models"): SparseInst (G-IAM) R-50, 33.4 mask AP on val2017,
# and its `_aug` variant (sparse_inst_r50_giam_aug_2b7d68.pth, 34.2 AP), both measured at input
# 608 (the yaml tests at 640): convert with `tools/convert_checkpoint.py sparseinst`, test at 608:
#   --cfg-options "test_dataloader.dataset.pipeline.1.scale=(853,608)"
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]

num_classes = 80
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
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    encoder=dict(
        type='InstanceContextEncoder',
        in_channels=[512, 1024, 2048],
        out_channels=256,
        pool_sizes=(1, 2, 3, 6)),
    decoder=dict(
        type='IAMDecoder',
        in_channels=256,
        num_classes=num_classes,
        num_masks=100,
        iam_type='group',  # 'base' (plain IAM) | 'group' (G-IAM) | 'group_softmax'
        groups=4,
        inst_dim=256,
        inst_convs=4,
        mask_dim=256,
        mask_convs=4,
        kernel_dim=128,
        scale_factor=2.0),
    criterion=dict(
        type='SparseInstCriterion',
        num_classes=num_classes,
        assigner=dict(type='SparseInstMatcher', alpha=0.8, beta=0.2),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, alpha=0.25, gamma=2.0,
                      reduction='mean', loss_weight=2.0),
        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='mean',
                       loss_weight=5.0),
        loss_dice=dict(type='DiceLoss', use_sigmoid=True, activate=True, reduction='mean',
                       naive_dice=False, eps=5e-5, loss_weight=2.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='mean',
                      loss_weight=1.0)),
    test_cfg=dict(score_thr=0.005, mask_thr_binary=0.45, max_per_img=100))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize',
         scales=[(853, s) for s in range(416, 641, 32)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(853, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=6,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])  # boxes are the predicted masks' tight boxes
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05, amsgrad=False),
    paramwise_cfg=dict(norm_decay_mult=0.0))
max_iters = 270000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=7330)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[210000, 250000], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=7330,
                                     max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# The official batch: 8 GPUs x 8 images; scale the lr linearly with --auto-scale-lr otherwise.
auto_scale_lr = dict(enable=False, base_batch_size=64)
