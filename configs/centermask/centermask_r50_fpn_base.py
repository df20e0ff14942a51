# CenterMask model (ResNet-50 + FPN P3-P7, FCOS with GIoU / centre sampling / centerness on the
# regression branch, SAG-Mask + MaskIoU on P3-P5) and the 3x multi-scale schedule, without data:
# shared by centermask_r50_3x.py, the VoVNetV2 variants and configs/demo/centermask_r18_shapes.py.
# Official: youngwanLEE/centermask2 configs/centermask/Base-CenterMask-ResNet.yaml + defaults.py.
model = dict(
    type='CenterMask',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    neck=dict(
        type='FPN', in_channels=[512, 1024, 2048], out_channels=256, start_level=0,
        add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True),
    bbox_head=dict(
        type='CenterSamplingFCOSHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
        center_sampling=True,
        center_sample_radius=1.5,
        norm_on_bbox=True,
        centerness_on_reg=True,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    roi_head=dict(
        type='CenterMaskRoIHead',
        num_classes=80,
        in_channels=256,
        featmap_strides=(8, 16, 32),
        roi_size=14,
        conv_channels=256,
        num_convs=4,
        maskiou=True,
        loss_mask_weight=1.0,
        loss_maskiou_weight=1.0,
        pos_iou_thr=0.5,
        max_pos_per_img=128,
        append_gt=True,
        mask_thr=0.5),
    # FCOS proposals for the mask head in training: top 1000 per level, NMS 0.6, keep 100
    train_cfg=dict(proposal=dict(nms_pre=1000, score_thr=0.05,
                                 nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)),
    # Base-CenterMask-ResNet.yaml: POST_NMS_TOPK_TEST 50
    test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=50))

# 3x: 270k iterations at batch 16, lr steps at 210k and 250k (about 36 epochs, steps 28 / 33)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=36, val_interval=3)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[28, 33], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
