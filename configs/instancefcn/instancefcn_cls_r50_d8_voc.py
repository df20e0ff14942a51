# InstanceFCN instance semantic segmentation (paper Sec. 5, PASCAL VOC 2012 val: 61.5 mAP^r@0.5,
# 43.0 mAP^r@0.7 with N = 300 proposals): InstanceFCN's class-agnostic segments classified by
# MNC's stage 3 (Dai, He, Sun, CVPR 2016; release daijifeng001/MNC, CFM mode): RoI max pooling
# 7x7 of the box -> fc6/fc7 4096; RoI pooling 14x14 x the segment's mask (14x14, binarised at
# 0.4) -> 2x2 max pool -> fc6_mask/fc7_mask 4096; concat -> 21-way softmax. Targets: box IoU
# >= 0.5 and mask IoU >= 0.5 with the best-box-IoU object; 64 segments per image (30 % box IoU
# in [0.5, 1], 50 % in [0.1, 0.5], 20 % in [0, 0.1]). Test: softmax scores, per class best 100,
# box NMS 0.3.
# The paper trains in two steps: first the proposals (instancefcn_r50_d8_coco.py's recipe on
# VOC), then the classifier. Step 2 is this config with load_from = the step-1 checkpoint:
# `train_proposals=False, detach_features=True` trains the classifier alone (trunk and proposal
# branches keep the step-1 weights; the losses of step 1 are not computed). One-step joint
# training: train_proposals=True (detach_features=False also lets the classifier train the
# trunk).
# Data: VOC 2012 SBD-style instance annotations in COCO format (e.g. the
# voc_2012_train/val_instance json of mmdet's pascal_voc tools) under data/VOCdevkit/.
_base_ = './instancefcn_r50_d8_coco.py'
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
model = dict(
    classifier=dict(
        num_classes=20, fc_channels=4096, roi_size=7, mask_size=14, binarize_thr=0.4,
        # the ResNet-50 stand-in's 2048 channels reduced to VGG-16 conv5_3's 512 (a deviation:
        # MNC pools conv5_3 directly)
        reduce_channels=512,
        train_cfg=dict(num_proposals=300, rois_per_img=64, fractions=(0.3, 0.5, 0.2),
                       thr_lo=(0.5, 0.1, 0.0), thr_hi=(1.0, 0.5, 0.1), fg_det_thr=0.5,
                       fg_seg_thr=0.5, add_gt=True, loss_weight=1.0, detach_features=True,
                       train_proposals=False),
        test_cfg=dict(num_proposals=300, scale=1.0, score_thr=0.0, nms_iou=0.3,
                      max_per_class=100, max_per_img=100)))
data_root = 'data/VOCdevkit/'
metainfo = dict(classes=VOC_CLASSES)
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                     ann_file='voc12_instance_train.json',
                                     data_prefix=dict(img='VOC2012/JPEGImages/')))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                   ann_file='voc12_instance_val.json',
                                   data_prefix=dict(img='VOC2012/JPEGImages/')))
test_dataloader = val_dataloader
# mAP^r@0.5 / @0.7 correspond to COCO segm AP at IoU 0.5 / 0.7 (COCO's 101-point
# interpolation instead of VOC's)
val_evaluator = dict(_delete_=True, type='InsplugCocoMetric',
                     ann_file=data_root + 'voc12_instance_val.json', metric=['segm'],
                     format_only=False)
test_evaluator = val_evaluator
# Step 2 (the classifier) follows MNC's CFM solver (experiments/scripts/cfm.sh,
# models/VGG16/cfm/solver.prototxt): 30k updates of 8 images (iter_size 8; here 8 GPUs x 1 image), lr 1e-3, x0.1 after 20k,
# momentum 0.9, wd 5e-4. REQUIRED before training: load_from = the step-1 checkpoint (this
# config with --cfg-options model.classifier=None and instancefcn_r50_d8_coco.py's schedule).
load_from = None
train_cfg = dict(type='IterBasedTrainLoop', max_iters=30000, val_interval=10000)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[20000], gamma=0.1)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000))
