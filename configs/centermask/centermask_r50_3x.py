# CenterMask, ResNet-50-FPN, multi-scale training (shorter side 640-800), 3x, batch 16, lr 0.01.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_R_50_FPN_ms_3x.yaml.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './centermask_r50_fpn_base.py',
]
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
# batch 16 = 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
