# D2Det, instance segmentation, R-101-FPN, 2x (24 epochs), COCO: the official setting of the
# release's configs/D2Det/D2Det_instance_r101_fpn_2x.py (JialeCao001/D2Det, mmdet 1.1; released
# model D2Det-instance-res101.pth: 39.8 mask AP on val2017, 40.2 on test-dev).
# mmdet 1.x geometry where it touches the released weights: LegacyAnchorGenerator (centre offset
# 0.5), LegacyDeltaXYWHBBoxCoder (+1 widths), RoI levels of sqrt((w + 1)(h + 1)) and RoIAlign over
# x1 .. x2 + 1 (DiscriminativeRoIExtractor(legacy_plus_one=True)).
# Convert the released model:
#   python tools/convert_checkpoint.py d2det D2Det-instance-res101.pth d2det_r101.pth \
#       --config configs/d2det/d2det_instance_r101_fpn_2x_coco.py
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 80
model = dict(
    _scope_='insplug',
    backbone=dict(depth=101,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    rpn_head=dict(
        anchor_generator=dict(type='LegacyAnchorGenerator', center_offset=0.5, scales=[8],
                              ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='LegacyDeltaXYWHBBoxCoder'),
        loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        _delete_=True,
        type='D2DetStandardRoIHead',
        bbox_roi_extractor=dict(
            type='DiscriminativeRoIExtractor',
            # release: DeformRoIPoolingPack(out_size=7, sample_per_part=1, trans_std=0.1)
            roi_layer=dict(type='DiscriminativeRoIPool', out_size=7, sample_per_part=1,
                           trans_std=0.1),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            with_reg=False,
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
            loss_bbox=dict(type='SmoothL1Loss', loss_weight=0.0)),
        reg_roi_extractor=dict(
            type='DiscriminativeRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=2, aligned=False),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        d2det_head=dict(type='D2DetRegMaskHead', num_convs=8, in_channels=256,
                        conv_channels=576, num_groups=36, with_mask=True,
                        num_classes=num_classes),
        jitter_amplitude=0.15,
        max_num_reg=192,
        release_broadcast=False),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=2000, max_per_img=2000, nms=dict(type='nms',
                                                                   iou_threshold=0.7)),
        rcnn=dict(
            assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
            sampler=dict(num=512, pos_fraction=0.25, add_gt_as_proposals=True),
            mask_size=28,
            max_num_reg=192)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=700, nms=dict(type='nms', iou_threshold=0.7)),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.3), max_per_img=100,
                  mask_thr_binary=0.5)))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 80, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[20, 23], gamma=0.1),
]
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)
