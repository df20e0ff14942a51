# FCIS model (ResNet-101 caffe, dilated C5, RPN on C4, FCIS head on C5) at the release's
# setting; see fcis_r101_coco.py for the data and schedule.
num_classes = 80
model = dict(
    type='FCIS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[103.06, 115.90, 123.15],  # the release's PIXEL_MEANS (BGR), no std
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_mask=True,
        pad_size_divisor=16),
    backbone=dict(
        type='ResNet',
        depth=101,
        num_stages=4,
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        out_indices=(2, 3),
        frozen_stages=1,  # conv1 + res2 (FIXED_PARAMS)
        norm_cfg=dict(type='BN', requires_grad=False),  # every gamma / beta fixed
        norm_eval=True,  # use_global_stats
        style='caffe',  # stride in the 1x1 of each first block (ResNet-v1)
        init_cfg=dict(type='Pretrained',
                      checkpoint='open-mmlab://detectron2/resnet101_caffe')),
    rpn_head=dict(
        type='FCISRPNHead',
        in_index=0,
        in_channels=1024,
        feat_channels=512,
        anchor_generator=dict(
            type='LegacyAnchorGenerator',
            strides=[16],
            ratios=[0.5, 1.0, 2.0],
            scales=[4, 8, 16, 32],
            center_offset=0.5),
        bbox_coder=dict(type='LegacyDeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                        target_stds=[1.0] * 4),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='FCISRoIHead',
        in_channels=2048,
        num_classes=num_classes,
        mid_channels=1024,
        group_size=7,
        pooled_size=21,
        featmap_stride=16,
        in_index=-1),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=0,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=6000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=2),
        rcnn=dict(ohem_rois=128, loss_weights=(1.0, 10.0, 1.0), binary_thresh=0.4,
                  fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.0,
                  bbox_stds=(0.2, 0.2, 0.5, 0.5))),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=2),
        rcnn=dict(iterations=2, min_drop_size=2, nms=0.3, merge_thr=0.5, max_per_img=100,
                  binary_thresh=0.4, score_floor=1e-3, bbox_stds=(0.2, 0.2, 0.5, 0.5))))
