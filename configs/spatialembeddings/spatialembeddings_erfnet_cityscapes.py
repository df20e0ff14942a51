# SpatialEmbeddings (Neven et al., CVPR 2019), the setting of the official release
# (davyneven/SpatialEmbeddings: src/train_config.py, src/test_config.py, src/test.py,
# src/utils/generate_crops.py) and of its released checkpoint (cars_pretrained_model.pth, 56.4 AP
# on the Cityscapes val cars):
# - one class, car (the official code trains one model per class; OBJ_ID 26 = car);
# - branched ERFNet (shared encoder; decoder 0 -> 2 offsets + 1 sigma, decoder 1 -> 1 seed map),
#   input RGB scaled to [0, 1] (ToTensor, no normalisation), no flip;
# - training on 512x512 crops centred on one object (generate_crops.py: centre = mean pixel
#   of the object, clipped to the image), batch 16, Adam lr 5e-4 weight decay 1e-4, poly decay
#   (power 0.9) stepped once per epoch over 200 epochs (LambdaLR, scheduler.step(epoch));
# - loss weights instance 1 / sigma 10 / seed 1, seed foreground weight 10, n_sigma 1, to_center;
# - test on the full 1024x2048 image, seed threshold 0.9, foreground seed > 0.5, 128 px minimum,
#   no cap on the number of proposals.
# Convert the released checkpoint with
#   python tools/convert_checkpoint.py spatialembeddings cars_pretrained_model.pth OUT.pth \
#       --config configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py
# Deviations (docs/deviations/spatialembeddings.md): an epoch is one pass over the training
# images with one object-centred crop each (official: 3000 crops drawn from the pre-generated
# set of one crop per object), and the official second stage (finetuning on 1024x1024 crops,
# README) is not part of its train_config and not reproduced here.
_base_ = [
    'mmdet::_base_/datasets/cityscapes_instance.py',
    '../_base_/default_runtime.py',
]
classes = ('car', )
num_classes = 1
metainfo = dict(classes=classes)

model = dict(
    type='BottomUpSegmentor',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],  # official input: RGB scaled to [0, 1]
        std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True,
        pad_size_divisor=8),
    backbone=dict(type='ERFNet', num_branches=2),
    head=dict(
        type='SpatialEmbeddingHead',
        num_classes=num_classes,
        in_channels=16,
        n_sigma=1,
        in_stride=2,
        in_index=(0, 1),
        spacing=(2 / 2047, 1 / 1023),
        sigma_init=1.0,
        foreground_weight=10.0,
        loss_weights=dict(instance=1.0, sigma=10.0, seed=1.0),
        test_cfg=dict(
            clustering=dict(type='GreedySeedClustering', seed_threshold=0.9,
                            mask_threshold=0.5, min_pixels=128, max_proposals=None),
            foreground_threshold=0.5,
            max_per_img=1000)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='ObjectCenteredCrop', crop_size=(512, 512)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=16, num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(_delete_=True, type='CityscapesDataset',
                 data_root='data/cityscapes/',
                 ann_file='annotations/instancesonly_filtered_gtFine_train.json',
                 data_prefix=dict(img='leftImg8bit/train/'),
                 metainfo=metainfo,
                 filter_cfg=dict(filter_empty_gt=True, min_size=0),
                 pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(batch_size=1, dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Evaluation: COCO segm/bbox AP, and the Cityscapes instance AP / AP50 of the official
# evaluator (cityscapesscripts) that the release reports: InsplugCityscapesMetric averages the
# classes of the model (here car: the official car AP); eval_classes='all' gives the mean over
# the 8 Cityscapes classes. Its result files go to a temporary folder; the scores are written
# with 2 decimals, as the release's src/test.py ("{:.02f}") that produced the 56.4 AP.
# Submission on the test split (per-image txt + png masks under PREFIX/results/):
#   python tools/test.py CONFIG CKPT --format-only PREFIX --format cityscapes --cfg-options \
#       test_dataloader.dataset.ann_file=annotations/instancesonly_filtered_gtFine_test.json \
#       test_dataloader.dataset.data_prefix.img=leftImg8bit/test/
val_evaluator = [
    dict(type='InsplugCocoMetric',
         ann_file='data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json',
         metric=['bbox', 'segm'], backend_args=backend_args),
    dict(type='InsplugCityscapesMetric', seg_prefix='data/cityscapes/gtFine/val',
         outfile_prefix=None, eval_classes='model', score_decimals=2,
         backend_args=backend_args),
]
test_evaluator = val_evaluator

max_epochs = 200
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-4, weight_decay=1e-4))
# official: LambdaLR((1 - epoch / 200) ** 0.9), stepped at the start of every epoch
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_epochs, by_epoch=True,
         convert_to_iter_based=False)
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=10))
