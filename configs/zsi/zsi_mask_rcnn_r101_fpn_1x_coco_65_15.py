# ZSI (Zheng et al., CVPR 2021) at the release's setting, COCO 2014 65/15 split
# (configs/zsi/65_15/train/zero-shot-mask-rcnn-BARPN-bbox_mask_sync_bg_65_15_decoder_notanh.py of
# zhengye1995/Zero-shot-Instance-Segmentation): ResNet-101 (torchvision) + FPN, background-aware
# RPN (softmax, 1 scale x 3 ratios), semantic box head (2 fcs of 1024, word2vec vocabulary,
# decoder, MSE 0.5), semantic mask head (4 convs, learnable kernel, decoder, MSE 0.5),
# synchronized background in both heads (the 65/15 mask head sets sync_bg), SGD 0.0075,
# 12 epochs, steps 8/11, warm-up 7000, gradient clip 35, 1333x800, flip.
# Training: the seen classes of instances_train2014.json (ClassSplitCocoDataset drops unseen
# annotations and images holding an unseen object; the release trains on its prepared
# instances_train2014_seen_65_15.json). This file evaluates the seen classes; the ZSI and GZSI
# settings are the *_zsi.py / *_gzsi.py variants.
# Vocabulary: the release's data/coco/vocabulary_w2v.txt (300 x V) is missing from its
# repository snapshot; V = 4071 is the size its code comments name (check it against
# kernel_semantic.weight of ZSI_65_15.pth) and the vocabulary must be loaded with
# ZSISemanticBBoxHead.load_vocabulary (it is not a checkpoint tensor in the release).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
split = '65_15'
num_seen = 65
model = dict(
    _scope_='insplug',
    type='ZSIMaskRCNN',
    bbox_sync_bg=True,
    mask_sync_bg=True,
    mode='seen',
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained',
                                           checkpoint='torchvision://resnet101')),
    rpn_head=dict(
        type='ZSIBackgroundAwareRPNHead',
        class_vectors=split,
        anchor_generator=dict(scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        bbox_head=dict(
            type='ZSISemanticBBoxHead',
            class_vectors=split,
            num_classes=num_seen,
            vocabulary_size=4071,
            with_decoder=True,
            loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
        mask_head=dict(
            type='ZSISemanticMaskHead',
            class_vectors=split,
            num_classes=num_seen,
            num_convs=4,
            chain_convs=False)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=2000)),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000)))

seen = dict(type='ClassSplitCocoDataset', split=split, subset='seen')
train_dataloader = dict(dataset=dict(seen, ann_file='annotations/instances_train2014.json',
                                     data_prefix=dict(img='train2014/')))
val_dataloader = dict(dataset=dict(seen, ann_file='annotations/instances_val2014.json',
                                   data_prefix=dict(img='val2014/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='data/coco/annotations/instances_val2014.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.0075), clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=7000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
