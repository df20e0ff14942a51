# FCIS, ResNet-101, COCO, OHEM: the released setting of msracver/FCIS
# (experiments/fcis/cfgs/resnet_v1_101_coco_fcis_end2end_ohem.yaml; 29.2 mask AP on minival,
# 29.6 on test-dev). Caffe ResNet-v1-101 with a dilated conv5 (stride 16), the RPN on C4
# (12 anchors: scales 4-32 x ratios 0.5/1/2 of 16 px, softmax), the FCIS head on C5
# (1024-channel conv_new_1 at 3x lr, 7 x 7 x 2 x 81 inside/outside maps, class-agnostic PS box
# regression, 21 x 21 pooling), OHEM 128 RoIs of all 300 proposals + gts, loss weights 1/10/1;
# test: 300 proposals, 2 iterations, mask voting (NMS 0.3, voting IoU 0.5, 100 per image).
# Schedule: the release trains 8 epochs of the flip-doubled trainval35k at lr 0.0005 per GPU
# with gradients summed over 8 GPUs (1 image each), step at 5.33 epochs, 250 warm-up
# iterations at 0.1x; here batch 8 with mean losses at lr 0.004 (same step), 16 epochs of
# random flips (= 8 doubled epochs), step at 11 (~5.33 doubled), warm-up 250 iterations.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './fcis_r101_base.py',
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),  # SCALES: (600, 1000)
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))  # x 8 GPUs
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='InsplugCocoMetric')
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=16, val_interval=16)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='ConstantLR', factor=0.1, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=16, by_epoch=True, milestones=[11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0005),
    paramwise_cfg=dict(custom_keys={'roi_head.head.conv_new_1': dict(lr_mult=3.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=8)
