# RSIS (Salvador et al., 2017), release imatge-upc/rsis, Pascal VOC 2012 setting (args.py
# defaults): ResNet-101 (ImageNet weights) with skips, hidden size 128, kernel 3, 'concat' skips,
# images 256 x 256, maxseqlen 10 steps, gt_maxseqlen 20, loss weights iou 1.0 / class 0.1 / stop
# 0.5 (balance 0.5), Adam lr 1e-3 (decoder and skips) and 1e-6 (trunk), weight decay 1e-6,
# batch 28. Data: VOC 2012 + SBD instance masks converted to COCO format (the release reads the
# VOC/SBD files itself; insplug reads COCO json: data/voc_sbd/{train,val}.json).
# The release switches the class loss on after 20 epochs and the stop loss when the validation
# loss stalls for 15 epochs (patience); RSISCurriculumHook uses fixed epochs instead (stop loss
# from epoch 35). No curriculum on the number of steps (release default: off for VOC).
# Convert the released model: python tools/merge_rsis_release.py encoder.pt decoder.pt rsis.pt &&
#   python tools/convert_checkpoint.py rsis rsis.pt rsis_voc_insplug.pth --config THIS
_base_ = ['../_base_/default_runtime.py']
num_classes = 20
image_size = (256, 256)
data_root = 'data/voc_sbd/'
dataset_type = 'CocoDataset'
classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
           'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
           'train', 'tvmonitor')

model = dict(
    type='RSISSegmentor',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='RSISResNet', depth=101, frozen_stages=-1, norm_eval=False,
                  style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    head=dict(type='RSISHead', num_classes=num_classes, in_channels=(2048, 1024, 512, 256, 64),
              hidden_size=128, kernel_size=3, skip_mode='concat', max_steps=10, max_gt=20,
              iou_weight=1.0, class_weight=0.1, stop_weight=0.5, stop_balance_weight=0.5,
              test_cfg=dict(stop_thr=0.5, mask_thr=0.5, min_size=0.001, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=28, num_workers=4, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='train.json',
                 data_prefix=dict(img='JPEGImages/'), metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='val.json',
                 data_prefix=dict(img='JPEGImages/'), metainfo=dict(classes=classes),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'val.json', metric=['segm'])
test_evaluator = val_evaluator

max_epochs = 100
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-6),
                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1e-3)}))
param_scheduler = []
custom_hooks = [
    # insplug's default hooks (a custom_hooks list replaces the inherited one)
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='AtomicCheckpointHook'),
    dict(type='RSISCurriculumHook', curriculum=False, class_loss_after=20,
         stop_loss_after=35, by_epoch=True)]
