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
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
        center_sampling=True,
        center_sample_radius=1.5,
        norm_on_bbox=True,
        centerness_on_reg=True,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        # the D = 16; the released yaml (commit 59f3482) sets EMBED_DIM: 32
        embed_dim=16,
        margin_dim=1,
        prior_margin=2.0,
        mask_scale_factor=2,
        box_padding=0.1,
        sample_pos_iou_thr=0.5,
        sample_in_mask=True,
        loss_mask_weight=0.5,
        loss_smooth_weight=0.1,
        mask_thr=0.53,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=100))

# 1x: 90k iterations at batch 16, steps at 60k and 80k (12 epochs, steps 8 / 11); the
# official warm-up is "constant" (lr / 3 for 500 iterations)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
