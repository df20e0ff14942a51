# BoxCaseg step 3: a standard Mask R-CNN trained on the pseudo masks (release:
# retrain/maskrcnn-benchmark/e2e_mask_rcnn_R_101_FPN_4x_voc_aug_cocostyle.yaml: R-101-FPN,
# 6 images per batch, lr 0.0075, 22500 iterations, step at 15000, 20 VOC classes).
# pseudo.json: tools/make_pseudo_masks.py configs/boxcaseg/boxcaseg_hrnet_w48_voc.py CKPT
#   --ann data/VOCSBD/voc_2012_train_aug_cocostyle.json
#   --img-dir data/VOCSBD/VOC2012/JPEGImages --out data/VOCSBD/voc_2012_train_aug_pseudo.json
# Evaluated with full masks of VOC 2012 val (COCO-style json) through the COCO metric.
# The release's modified mask loss (it loads a per-instance 'confidence', which the json
# carries) is not in the published code; this config trains the plain loss.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
voc_root = 'data/VOCSBD/'
classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
           'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep',
           'sofa', 'train', 'tvmonitor')
model = dict(
    backbone=dict(depth=101,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    roi_head=dict(bbox_head=dict(num_classes=20), mask_head=dict(num_classes=20)))
train_dataloader = dict(
    batch_size=3,  # x 2 GPUs = the release's 6
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ValidatedCocoDataset', metainfo=dict(classes=classes), data_root=voc_root,
                 ann_file='voc_2012_train_aug_pseudo.json',
                 data_prefix=dict(img='VOC2012/JPEGImages/')))
val_dataloader = dict(
    dataset=dict(type='ValidatedCocoDataset', metainfo=dict(classes=classes), data_root=voc_root,
                 ann_file='voc_2012_val_cocostyle.json',
                 data_prefix=dict(img='VOC2012/JPEGImages/')))
test_dataloader = val_dataloader
val_evaluator = dict(type='InsplugCocoMetric', ann_file=voc_root + 'voc_2012_val_cocostyle.json')
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.0075, momentum=0.9, weight_decay=0.0001))
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=22500, val_interval=2500)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=22500, milestones=[15000], gamma=0.1),
]
