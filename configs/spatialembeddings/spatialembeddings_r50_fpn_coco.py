# SpatialEmbeddings on COCO with a ResNet-50 + FPN trunk instead of ERFNet: the head reads FPN
# level P2 (stride 4) for both the offset/sigma and the seed outputs and upsamples to the input
# size. Loss and clustering as in the official code; Adam lr 5e-4, weight decay 1e-4, poly decay,
# 12 epochs.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 80

model = dict(
    type='BottomUpSegmentor',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              num_outs=5),
    head=dict(
        type='SpatialEmbeddingHead',
        num_classes=num_classes,
        in_channels=256,
        n_sigma=1,
        in_stride=4,
        in_index=(0, 0),
        foreground_weight=10.0,
        loss_weights=dict(instance=1.0, sigma=10.0, seed=1.0),
        test_cfg=dict(
            clustering=dict(type='GreedySeedClustering', seed_threshold=0.9,
                            mask_threshold=0.5, min_pixels=128),
            foreground_threshold=0.5,
            max_per_img=100)))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=12, by_epoch=True),
]
