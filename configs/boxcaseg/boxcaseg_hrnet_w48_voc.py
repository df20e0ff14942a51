# BoxCaseg class-agnostic segmenter at the release's PASCAL setting
# (hustvl/BoxCaseg joint_training/experiments/PD/pd_trans_fcn.yaml, train_pd.sh):
# HRNet-W48 (HRNet-Semantic-Segmentation fusion), 288 px crops, fcn_ratio 0.7,
# SGD lr 0.004 momentum 0.9 wd 1e-4, 16 crops per GPU x 2 GPUs, 40 epochs, poly decay (0.9).
# Box images: PASCAL VOC 2012 train_aug (10582 images, BBTP's cocostyle json), boxes only.
# Salient images: DUT-TR-Single (7991 images), converted once to a COCO json with
#   python -m insplug.core.boxcaseg.salient --masks DUTS-TR-Mask-single \
#       --img-dir DUTS-TR-Image-single --out data/DUTS/dut_tr_single.json
# Then: tools/make_pseudo_masks.py THIS_CONFIG CKPT --ann voc_2012_train_aug_cocostyle.json
#   --img-dir data/VOCSBD/VOC2012/JPEGImages --out pseudo.json, and train
#   configs/boxcaseg/mask_rcnn_r101_fpn_pseudo_voc.py on pseudo.json.
_base_ = ['../_base_/default_runtime.py']

crop_size = 288
voc_root = 'data/VOCSBD/'
dut_root = 'data/DUTS/'
voc_classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
model = dict(
    type='BoxCaseg',
    # the release's weak/test normalisation: RGB in [0, 1] minus (102.98, 115.95, 122.77) / 255
    data_preprocessor=dict(type='mmdet.DetDataPreprocessor',
                           mean=[102.9801, 115.9465, 122.7717], std=[255.0, 255.0, 255.0],
                           bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='BilinearHRNet',
        norm_cfg=dict(type='BN', momentum=0.01, requires_grad=True),
        norm_eval=False,
        extra=dict(
            stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4,),
                        num_channels=(64,)),
            stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(4, 4),
                        num_channels=(48, 96)),
            stage3=dict(num_modules=4, num_branches=3, block='BASIC', num_blocks=(4, 4, 4),
                        num_channels=(48, 96, 192)),
            stage4=dict(num_modules=3, num_branches=4, block='BASIC',
                        num_blocks=(4, 4, 4, 4), num_channels=(48, 96, 192, 384))),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w48')),
    in_channels=48 + 96 + 192 + 384,
    crop_size=crop_size,
    fcn_ratio=0.7,
    final_kernel=1,
    pairwise_weight=0.05,
    mask_thr=0.5)

box_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='BoxesOnly'),
    dict(type='PackDetInputs'),
]
salient_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomCrop', crop_size=(crop_size, crop_size), allow_negative_crop=False),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='BoxesOnly'),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=16,  # images per GPU; every box of a box image is one crop
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='BoxSalientDataset',
        dataset=dict(type='ValidatedCocoDataset', metainfo=dict(classes=voc_classes),
                     data_root=voc_root, ann_file='voc_2012_train_aug_cocostyle.json',
                     data_prefix=dict(img='VOC2012/JPEGImages/'),
                     filter_cfg=dict(filter_empty_gt=True), pipeline=box_pipeline),
        salient=dict(type='ValidatedCocoDataset', metainfo=dict(classes=('salient',)),
                     data_root=dut_root, ann_file='dut_tr_single.json',
                     data_prefix=dict(img='DUTS-TR-Image-single/'),
                     filter_cfg=dict(filter_empty_gt=True), pipeline=salient_pipeline)))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ValidatedCocoDataset', metainfo=dict(classes=voc_classes),
                 data_root=voc_root, ann_file='voc_2012_val_cocostyle.json',
                 data_prefix=dict(img='VOC2012/JPEGImages/'), test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='InsplugCocoMetric', ann_file=voc_root + 'voc_2012_val_cocostyle.json',
                     metric=['segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0001,
                                    nesterov=False))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=40, by_epoch=True)]
auto_scale_lr = dict(enable=False, base_batch_size=32)
