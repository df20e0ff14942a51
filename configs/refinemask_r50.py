# RefineMask, R50-FPN, 1x schedule, COCO (official configs/refinemask/coco/r50-refinemask-1x.py
# of github.com/zhanggang001/RefineMask, mmdet 2.x) ported to mmdet 3.x.
# Official result: 37.3 mask AP on COCO val2017 (README of the official release).
# Batch 16 = 8 GPUs x 2 images (lr 0.02); on fewer GPUs set auto_scale_lr.enable=True.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',
]

num_classes = 80
model = dict(
    # the mmdet base sets _scope_='mmdet' on the model; insplug's scope also sees mmdet's types
    _scope_='insplug',
    roi_head=dict(
        type='RefineRoIHead',
        bbox_head=dict(
            num_classes=num_classes,
            # the official config doubles both box-head losses
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
            loss_bbox=dict(type='L1Loss', loss_weight=2.0)),
        mask_roi_extractor=dict(
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)),
        mask_head=dict(
            _delete_=True,
            type='RefineMaskHead',
            num_classes=num_classes,
            num_convs_instance=2,
            conv_in_channels_instance=256,
            conv_out_channels_instance=256,
            num_convs_semantic=4,
            conv_in_channels_semantic=256,
            conv_out_channels_semantic=256,
            dilations=[1, 3, 5],
            semantic_out_stride=4,
            stage_num_classes=[num_classes] * 4,  # official 1x: class-specific at every stage
            stage_sup_size=[14, 28, 56, 112],
            stage_instance_loss_weight=[0.25, 0.5, 0.75, 1.0],
            semantic_loss_weight=1.0,
            boundary_width=2,
            start_stage=1)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # official: polygon masks (poly2mask=False); targets are rasterised per RoI
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(classwise=True)
test_evaluator = val_evaluator

# SGD lr 0.02 for 16 images, 12 epochs, steps at 8 and 11, 500 linear warm-up iterations
# (schedule_1x), gradient clipping at norm 35 as in the official release.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)
