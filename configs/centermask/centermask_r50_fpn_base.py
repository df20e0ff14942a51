# CenterMask model (ResNet-50 + FPN P3-P7, FCOS with GIoU / centre sampling / centerness on the
# box tower, SAG-Mask + MaskIoU on P3-P5) and the 3x schedule in iterations, without data:
# shared by centermask_r50_3x.py, the VoVNetV2 variants and configs/demo/centermask_r18_shapes.py.
# Official: youngwanLEE/centermask2 configs/centermask/Base-CenterMask-ResNet.yaml,
# centermask_R_50_FPN_ms_3x.yaml, centermask/config/defaults.py and detectron2's defaults.
model = dict(
    type='CenterMask',
    # detectron2: BGR, PIXEL_MEAN [103.530, 116.280, 123.675], PIXEL_STD [1, 1, 1] (the MSRA /
    # VoVNet ImageNet weights absorbed the std), size divisibility 32
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False, pad_size_divisor=32),
    # MSRA R-50 (STRIDE_IN_1X1: caffe style), FrozenBN, FREEZE_AT 2 (stem + res2)
    backbone=dict(
        type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    # detectron2 FPN on res3-res5 + LastLevelP6P7 from P5 (ReLU before P7); c2_xavier_fill
    # (kaiming_uniform a=1) initialisation
    neck=dict(
        type='FPN', in_channels=[512, 1024, 2048], out_channels=256, start_level=0,
        add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True,
        init_cfg=dict(type='Kaiming', layer='Conv2d', a=1, mode='fan_in',
                      nonlinearity='leaky_relu', distribution='uniform', bias=0)),
    # centermask2's FCOS (MODEL.FCOS defaults): GN towers of 4 convs with bias, Scale per level,
    # relu(x) * stride regression, GIoU + focal + centerness, centre sampling 1.5,
    # sizes of interest 64/128/256/512
    bbox_head=dict(
        type='FaithfulFCOSHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        strides=[8, 16, 32, 64, 128],
        sizes_of_interest=(64, 128, 256, 512),
        center_sample_radius=1.5,
        use_scale=True,
        norm_reg_targets=True,
        centerness_on_reg=True,
        loss_type='giou',
        conv_bias=True,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    roi_head=dict(
        type='CenterMaskRoIHead',
        num_classes=80,
        in_channels=256,
        featmap_strides=(8, 16, 32),
        roi_size=14,
        conv_channels=256,
        num_convs=4,
        maskiou=True,
        maskiou_conv_channels=256,
        maskiou_num_convs=4,
        maskiou_fc_channels=1024,
        loss_mask_weight=1.0,
        loss_maskiou_weight=1.0,
        pos_iou_thr=0.5,
        max_pos_per_img=128,  # BATCH_SIZE_PER_IMAGE 512 x POSITIVE_FRACTION 0.25
        append_gt=True,
        mask_thr=0.5),
    # FCOS proposals for the mask head in training: INFERENCE_TH_TRAIN 0.05 on cls (not
    # THRESH_WITH_CTR), PRE_NMS_TOPK_TRAIN 1000 per level, NMS 0.6, POST_NMS_TOPK_TRAIN 100
    train_cfg=dict(proposal=dict(score_thr=0.05, nms_pre=1000, thresh_with_ctr=False,
                                 candidate_mode='threshold_topk', score='sqrt',
                                 nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)),
    # Base-CenterMask-*.yaml: POST_NMS_TOPK_TEST 50; score sqrt(cls * ctr)
    test_cfg=dict(score_thr=0.05, nms_pre=1000, thresh_with_ctr=False,
                  candidate_mode='threshold_topk', score='sqrt',
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=50))

# 3x: MAX_ITER 270000 at IMS_PER_BATCH 16, STEPS (210000, 250000) -- 36.84 epochs of COCO
# train2017 (117266 images with annotations), steps at 28.65 / 34.11 epochs; linear warm-up
# 1000 iterations from 0.001 (detectron2's WarmupMultiStepLR)
max_iters = 270000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=30000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[210000, 250000], gamma=0.1),
]
# SGD lr 0.01, momentum 0.9, WEIGHT_DECAY 1e-4, WEIGHT_DECAY_NORM 0 (BN and GN weights/biases),
# no gradient clipping
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)
