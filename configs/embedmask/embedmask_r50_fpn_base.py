# EmbedMask model (ResNet-50 + FPN P3-P7 + EmbedMaskHead) and the 1x schedule, without data:
# shared by embedmask_r50_1x.py and configs/demo/embedmask_r18_shapes.py.
# Official: yinghdb/EmbedMask configs/embed_mask/embed_mask_R50_1x.yaml + fcos_core defaults.
model = dict(
    type='EmbedMask',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[102.9801, 115.9465, 122.7717], std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    neck=dict(
        type='FPN', in_channels=[512, 1024, 2048], out_channels=256, start_level=0,
        add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True),
    bbox_head=dict(
        type='EmbedMaskHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],
        sizes_of_interest=(64, 128, 256, 512),   # FPN_INTEREST_SPLIT
        center_sample_radius=1.5,                # CENTER_POS_RADIOS
        norm_reg_targets=True,
        centerness_on_reg=True,
        loss_type='giou',                        # IOU_LOSS_TYPE, (I + 1) / (U + 1)
        conv_bias=True,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        # released revision (e9d6142): EMBED_DIM 16, D margins + per-level margin_scales,
        # BOX_PADDING -1 (mask loss over the whole grid), MASK_TH 0.53 on log-probabilities
        embed_dim=16,
        per_dim_margin=True,
        prior_margin=2.0,
        margin_reduce_factor=32,
        embed_reduce_factor=1,
        mask_scale_factor=2,
        box_padding=-1.0,
        sample_in_mask=True,
        loss_mask_weight=0.5,
        mask_thr=0.53),
    # INFERENCE_TH, PRE_NMS_TOP_N, score cls * ctr (no sqrt), NMS_TH (+1 box areas),
    # DETECTIONS_PER_IMG
    test_cfg=dict(score_thr=0.05, nms_pre=1000, score='product',
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))

# Epoch form of the 1x schedule (12 epochs, steps 8 / 11) for derived configs such as the CPU
# demo; embedmask_r50_1x.py uses the official iteration schedule (90k at batch 16, steps 60k
# and 80k, constant warm-up lr / 3 for 500 iterations).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# maskrcnn-benchmark's make_optimizer: every parameter whose name contains "bias" gets
# lr x BIAS_LR_FACTOR (2) and WEIGHT_DECAY_BIAS (0), GN biases included (mmdet's
# bias_lr_mult / bias_decay_mult skip norm layers, hence the custom key); GN weights keep the
# weight decay.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0,
                       custom_keys={'.gn.bias': dict(lr_mult=2.0, decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
