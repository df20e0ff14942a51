# PRM (Zhou et al., CVPR 2018) at the official setting (ZhouYanzhao/PRM, pytorch branch,
# demo/config.yml): FC-ResNet-50 (ImageNet-pretrained torchvision ResNet-50, 1x1 conv
# classifier), 448 x 448 inputs (no aspect kept), sub-pixel factor 8 and window 3 in training,
# multi-label soft-margin loss on VOC 2012 trainval image labels (difficult objects positive),
# SGD lr 0.01 with the trunk at 0.01 x 0.01 (Nest 'finetune' groups), momentum 0.9,
# wd 1e-4, batch 16, 20 epochs. Inference as the release's demo (sub-pixel 1, peak threshold
# 30, param (0.95, 1e-5, 0.8)), instances retrieved among proposals from a file (MCG in the
# paper; convert them to {file name: [RLE, ...]} -- see docs/deviations/prm.md).
# Data: VOC 2012 converted to COCO format (instance masks from SegmentationObject for val).
_base_ = ['../_base_/default_runtime.py']
num_classes = 20
classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
           'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
           'sheep', 'sofa', 'train', 'tvmonitor')
data_root = 'data/voc2012_coco/'
model = dict(
    type='PRMSegmentor',
    num_classes=num_classes,
    in_channels=2048,
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(3,), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    proposal_source=dict(type='FileProposals', file=data_root + 'proposals_val.json'),
    train_cfg=dict(win_size=3, sub_pixel_locating_factor=8, filter_type='median'),
    test_cfg=dict(win_size=3, sub_pixel_locating_factor=1, class_threshold=0.0,
                  peak_threshold=30.0, bg_factor=0.95, penalty=1e-5, balance=0.8,
                  contour_width=5, proposal_count=100, nms_thr=0.3))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', scale=(448, 448), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='ImageLevelLabels', num_classes=num_classes),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                    'flip_direction', 'gt_image_labels', 'gt_image_counts')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(448, 448), keep_ratio=False),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/trainval_boxes.json', data_prefix=dict(img='JPEGImages/'),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/val_segmentation.json',
                 data_prefix=dict(img='JPEGImages/'), test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='InsplugCocoMetric',
                     ann_file=data_root + 'annotations/val_segmentation.json',
                     metric=['segm'], format_only=False)
test_evaluator = val_evaluator
# the release's Nest 'finetune' parameter groups: base lr 0.01, 'features' (the trunk) x 0.01
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.01)}))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = []
