# YOLACT model (dbolya/yolact data/config.py ``yolact_resnet50_config`` = ``yolact_base_config``
# with a ResNet-50): mmdet's YOLACT detector with insplug's YOLACTFPN (ReLU after the 3x3 output
# convs, P6/P7 from P5 by stride-2 convs), YOLACTBoxHead (release priors / matching / OHEM /
# Fast NMS) and ProtoMaskHead (protonet P3 -> 3x conv3x3 -> x2 -> conv3x3 -> 1x1 to k = 32,
# ReLU; semantic segmentation branch; YOLACT++ mask-IoU rescoring with with_mask_iou=True).
# Model only: configs/yolact/yolact_r50_coco.py adds data and schedule.
num_protos = 32
model = dict(
    type='YOLACT',
    # the release's BackboneTransform: BGR means/stds of ImageNet, then RGB
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.68, 116.78, 103.94], std=[58.40, 57.12, 57.38],
        bgr_to_rgb=True, pad_mask=True),
    # torchvision-style ResNet; BN trained in batch-statistics mode (train.py keeps BN
    # unfrozen at 8 images per GPU), nothing frozen
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
        zero_init_residual=False, style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='YOLACTFPN', in_channels=[512, 1024, 2048], out_channels=256, num_extra=2,
              relu_pred_layers=True, relu_extra=False),
    bbox_head=dict(
        type='YOLACTBoxHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        num_head_convs=1,
        num_protos=num_protos,
        # pred_scales [[24], [48], [96], [192], [384]] at max_size 550, aspect ratios 1, 1/2, 2,
        # use_square_anchors=True (YOLACT's released models: every prior is a square)
        prior_scales=[[24], [48], [96], [192], [384]],
        prior_ratios=[1.0, 0.5, 2.0],
        prior_max_size=550,
        square_anchors=True,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, reduction='none'),
        loss_cls_weight=1.0,      # conf_alpha
        loss_bbox_weight=1.5),    # bbox_alpha
    mask_head=dict(
        type='ProtoMaskHead',
        num_classes=80,
        in_channels=256,
        protonet=dict(type='ProtoNetEncoder', in_channels=256, feat_channels=256,
                      num_protos=num_protos, num_convs=3, in_levels=(0,),
                      proto_activation='relu', init='xavier'),
        loss_mask_weight=6.125,       # mask_alpha
        max_masks_to_train=100,       # masks_to_train
        with_seg_branch=True,         # use_semantic_segmentation_loss
        loss_segm_weight=1.0,
        with_mask_iou=False,
        loss_mask_iou_weight=25.0,
        discard_mask_area=25),
    # positive_iou_threshold, negative_iou_threshold, crowd_iou_threshold, ohem_negpos_ratio
    train_cfg=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, crowd_iou_thr=0.7, neg_pos_ratio=3),
    # nms_conf_thresh, nms_thresh, nms_top_k, max_num_detections; Fast NMS per class without the
    # second score threshold, no nms_pre; eval.py's COCO output (integer boxes, no empty boxes)
    test_cfg=dict(score_thr=0.05, iou_thr=0.5, top_k=200, max_per_img=100,
                  second_threshold=False, mask_thr=0.5, rescore_bbox=False, integer_boxes=True,
                  drop_empty=True))
