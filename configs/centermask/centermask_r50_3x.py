# CenterMask, ResNet-50-FPN, multi-scale training (shorter side 640-800), 3x, batch 16, lr 0.01.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_R_50_FPN_ms_3x.yaml (the
# centermask2 README publishes no R-50 checkpoint; this config reproduces its training).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './centermask_r50_fpn_base.py',
]
backend_args = None
# detectron2: polygon masks (INPUT.MASK_FORMAT 'polygon'): mask targets are the polygons
# rasterised in each RoI, and the MaskIoU area ratio comes from them (poly2mask=False);
# ResizeShortestEdge (640..800, 'choice', max 1333) and horizontal flip
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# 8 GPUs x 2 images = IMS_PER_BATCH 16; iteration-based loop: infinite sampler
# (detectron2 drops images without annotations but keeps small ones: min_size 0)
train_dataloader = dict(
    batch_size=2, num_workers=2, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=0)))
# MIN_SIZE_TEST 800, MAX_SIZE_TEST 1333 (mmdet's coco_instance test pipeline); segm results
# are ranked by the MaskIoU-rescored `mask_scores`, bbox results by the FCOS score
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
