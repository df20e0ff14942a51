# CPU demo of D2Det (instance variant) on the bundled shapes set (256 px, 5 classes): ResNet-18
# trained from scratch (nothing can be downloaded), narrow FPN and heads, few epochs. The method
# (discriminative RoI pooling with its offset predictor and adaptive weights, the box head
# without regression, dense local regression with the mask-derived overlap map, the 28 x 28
# instance masks and mask-IoU scores) is the full one; widths, schedule, anchor scale and the
# optimiser differ from configs/d2det/d2det_instance_r101_fpn_2x_coco.py.
# Prepare the data with:  python -m insplug.datasets.shapes --out data/shapes
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]

num_classes = 5
width = 64  # FPN / RoI feature channels
model = dict(
    _scope_='insplug',
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(
        in_channels=width,
        feat_channels=width,
        # objects are 10-150 px in 256 px images: anchors of 16..256 px
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        _delete_=True,
        type='D2DetStandardRoIHead',
        bbox_roi_extractor=dict(
            type='DiscriminativeRoIExtractor',
            roi_layer=dict(type='DiscriminativeRoIPool', out_size=7, sample_per_part=1,
                           trans_std=0.1, deform_fc_channels=256),
            out_channels=width,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            with_reg=False,
            in_channels=width,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes=num_classes,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
            loss_bbox=dict(type='SmoothL1Loss', loss_weight=0.0)),
        reg_roi_extractor=dict(
            type='DiscriminativeRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=2, aligned=False),
            out_channels=width,
            featmap_strides=[4, 8, 16, 32]),
        d2det_head=dict(type='D2DetRegMaskHead', num_convs=2, in_channels=width,
                        conv_channels=64, num_groups=8, with_mask=True,
                        num_classes=num_classes, deconv_channels=64, deconv_groups=8,
                        fc_channels=256),
        max_num_reg=64),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128), max_num_reg=64)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.3), max_per_img=30,
                  mask_thr_binary=0.5)))

train_dataloader = dict(batch_size=4, num_workers=2)
val_dataloader = dict(batch_size=4, num_workers=2)
test_dataloader = val_dataloader

max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# from scratch for a few hundred iterations: AdamW, as the other two-stage demos
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[5],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_epochs),
                     logger=dict(type='LoggerHook', interval=10))
randomness = dict(seed=0)
