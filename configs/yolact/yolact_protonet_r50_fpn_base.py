# YOLACT (mmdet's YOLACT detector; insplug's YOLACTBoxHead = mmdet's YOLACTHead with YOLACT's
# hard-negative count on images without positives) whose mask branch is insplug's ProtoMaskHead:
# the registered ProtoNetEncoder (P3 -> 3x conv3x3 -> x2 -> conv3x3 -> 1x1 to k = 32, ReLU),
# the shared assembly helper (linear combination, sigmoid, crop) and, optionally, YOLACT++'s
# fast mask-IoU rescoring (with_mask_iou=True). Model only, no data / schedule.
# Official: dbolya/yolact data/config.py (yolact_base_config, yolact_plus_base_config).
num_protos = 32
model = dict(
    type='YOLACT',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.68, 116.78, 103.94], std=[58.40, 57.12, 57.38],
        bgr_to_rgb=True, pad_mask=True),
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
        zero_init_residual=False, style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
        add_extra_convs='on_input', num_outs=5, upsample_cfg=dict(mode='bilinear')),
    bbox_head=dict(
        type='YOLACTBoxHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator', octave_base_scale=3, scales_per_octave=1,
            base_sizes=[8, 16, 32, 64, 128], ratios=[0.5, 1.0, 2.0],
            strides=[550.0 / x for x in [69, 35, 18, 9, 5]],
            centers=[(550 * 0.5 / x, 550 * 0.5 / x) for x in [69, 35, 18, 9, 5]]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, reduction='none',
                      loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.5),
        num_head_convs=1,
        num_protos=num_protos,
        use_ohem=True),
    mask_head=dict(
        type='ProtoMaskHead',
        num_classes=80,
        in_channels=256,
        protonet=dict(type='ProtoNetEncoder', in_channels=256, feat_channels=256,
                      num_protos=num_protos, num_convs=3, in_levels=(0,),
                      proto_activation='relu', init='xavier'),
        loss_mask_weight=6.125,
        max_masks_to_train=100,
        with_seg_branch=True,
        with_mask_iou=False,
        loss_mask_iou_weight=25.0,
        discard_mask_area=25),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.,
                      ignore_iof_thr=-1, gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1, pos_weight=-1, neg_pos_ratio=3, debug=False),
    test_cfg=dict(
        nms_pre=1000, min_bbox_size=0, score_thr=0.05, mask_thr=0.5, iou_thr=0.5, top_k=200,
        max_per_img=100, mask_thr_binary=0.5))
