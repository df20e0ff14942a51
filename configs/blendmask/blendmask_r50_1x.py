# BlendMask, R-50 (caffe) + FPN, 1x = 90k iterations at batch 16 (8 GPUs x 2), lr 0.01,
# steps at 60k/80k, multi-scale training (shorter side 640-800, longer <= 1333), test at 800.
# Official: aim-uofa/AdelaiDet configs/BlendMask/R_50_1x.yaml (+ Base-BlendMask.yaml).
# Reference: 35.8 mask AP on COCO val2017 (AdelaiDet BlendMask README, R_50_1x).
# On fewer GPUs set auto_scale_lr.enable=True (base batch 16).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './blendmask_r50_fpn_base.py',
]
backend_args = None
# detectron2 keeps COCO masks as polygons (INPUT.MASK_FORMAT 'polygon'): the blender's mask
# targets rasterise the polygons inside each box (poly2mask=False). The thing semantic map is
# painted from all annotations (crowd included, later wins) before resizing (ThingSemanticMap,
# as AdelaiDet's datasets/prepare_thing_sem_from_instance.py).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='ThingSemanticMap'),
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 90000
# detectron2 TEST.EVAL_PERIOD 0: evaluation after training only
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# detectron2 schedule: linear warm-up (1000 iters, factor 0.001), x0.1 at 60k and 80k
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[60000, 80000], gamma=0.1),
]
# detectron2 SOLVER: WEIGHT_DECAY 1e-4, WEIGHT_DECAY_NORM 0 (no decay on any norm layer),
# bias decay = WEIGHT_DECAY, BIAS_LR_FACTOR 1, no gradient clipping; CHECKPOINT_PERIOD 5000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0.0))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=16)
