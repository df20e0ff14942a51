# BlendMask model (ResNet-50 caffe + FPN P3-P7 + FCOS head with top layer + blender), no data:
# shared by the COCO config (blendmask_r50_1x.py) and the shapes demo
# (configs/demo/blendmask_r18_shapes.py).
# Official: aim-uofa/AdelaiDet configs/BlendMask/Base-BlendMask.yaml + adet/config/defaults.py.
num_bases = 4
attn_size = 14
model = dict(
    type='BlendMask',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False, pad_mask=True, pad_size_divisor=32,
        pad_seg=True, seg_pad_value=0),  # the thing map (ThingSemanticMap) is padded with 0
    # detectron2's MSRA R-50 (caffe): frozen BN, stem + res2 frozen
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    # FPN on res3-res5, P6/P7 from P5 (AdelaiDet's build_fcos_resnet_fpn_backbone);
    # detectron2 initialises every FPN conv with c2_xavier_fill = kaiming_uniform(a=1), bias 0
    neck=dict(
        type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
        add_extra_convs='on_output', num_outs=5, relu_before_extra_convs=True,
        init_cfg=dict(type='Kaiming', layer='Conv2d', a=1, mode='fan_in',
                      nonlinearity='leaky_relu', distribution='uniform', bias=0)),
    # AdelaiDet FCOS (adet/config/defaults.py + Base-BlendMask.yaml): GN towers of 4 convs with
    # bias, centre sampling radius 1.5, sizes of interest 64/128/256/512, GIoU with +1
    # smoothing, stride-normalised targets, centerness on the box tower, USE_SCALE False,
    # THRESH_WITH_CTR True, sqrt(cls * ctr) scores (insplug.core.fcos)
    bbox_head=dict(
        type='BlendMaskFCOSHead',
        num_bases=num_bases,
        attn_size=attn_size,
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],
        sizes_of_interest=(64, 128, 256, 512),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        use_scale=False,
        norm_reg_targets=True,
        centerness_on_reg=True,
        center_sample_radius=1.5,
        loss_type='giou',
        iou_smooth=1.0,
        focal_alpha=0.25,
        focal_gamma=2.0),
    # bottom module: AdelaiDet's "ProtoNet" basis module = ProtoNetEncoder over P3-P5
    mask_head=dict(
        type='BlendMaskHead',
        num_classes=80,
        num_bases=num_bases,
        attn_size=attn_size,
        bottom_resolution=56,
        bases_stride=4,
        pooler_sampling_ratio=1,
        loss_mask_weight=1.0,
        semantic_loss_weight=0.3,
        semantic_in_channels=256,
        semantic_feat_channels=128,
        semantic_stride=8,
        bottom_module=dict(
            type='ProtoNetEncoder', in_channels=256, feat_channels=128, num_protos=num_bases,
            num_convs=3, in_levels=(0, 1, 2), level_convs=True, norm='BN',
            proto_activation=None, init='kaiming'),
        bottom_sync_bn='auto',       # BASIS_MODULE.NORM SyncBN (BN when not distributed)
        bottom_last_init='pytorch'),  # the last basis conv keeps PyTorch's default init
    # FCOS INFERENCE_TH_TEST 0.05, PRE_NMS_TOPK_TEST 1000, NMS_TH 0.6, POST_NMS_TOPK_TEST 100
    test_cfg=dict(
        score_thr=0.05,
        nms_pre=1000,
        thresh_with_ctr=True,
        score='sqrt',
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100,
        mask_thr=0.5))
