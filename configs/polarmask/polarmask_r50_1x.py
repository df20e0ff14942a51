# PolarMask, ResNet-50 (caffe) + FPN, 768 x 1280, 1x (12 epochs), batch 16 (4 GPUs x 4), lr 0.01.
# Official: xieenze/PolarMask configs/polarmask/4gpu/polar_768_1x_r50.py (mmdet 1.x).
# Reference: 29.1 mask AP, COCO test-dev, R-50 1x (PolarMask paper, CVPR 2020); the release's
# README: R-50 1x 28.9 (4 GPUs) / 29.1 (32 GPUs) mask AP on minival.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './polarmask_r50_fpn_base.py',
]
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # the release drops annotations of <= 15 pixels or with w < 10 and h < 10
    dict(type='PolarMaskFilterAnnotations', min_area=15, min_wh=(10, 10)),
    dict(type='Resize', scale=(1280, 768), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1280, 768), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

