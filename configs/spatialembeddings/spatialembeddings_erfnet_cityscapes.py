# SpatialEmbeddings (Neven et al., CVPR 2019), Cityscapes setting of the official code
# (davyneven/SpatialEmbeddings, src/train_config.py): branched ERFNet (shared encoder, one
# decoder for offsets + sigma, one for seeds), 512x512 crops, batch 16, Adam lr 5e-4 with weight
# decay 1e-4, poly (power 0.9) decay over 200 epochs of 3000 crops (= 37,500 iterations),
# loss weights instance 1 / sigma 10 / seed 1, seed foreground weight 10, n_sigma 1.
# The official code trains one class (car) per model with crops centred on objects; here one
# model has a seed map per class of the 8 Cityscapes "thing" classes.
_base_ = [
    'mmdet::_base_/datasets/cityscapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 8

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
        foreground_weight=10.0,
        loss_weights=dict(instance=1.0, sigma=10.0, seed=1.0),
        test_cfg=dict(
            clustering=dict(type='GreedySeedClustering', seed_threshold=0.5,
                            mask_threshold=0.5, min_pixels=128),
            foreground_threshold=0.5,
            max_per_img=100)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomCrop', crop_size=(512, 512), allow_negative_crop=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=8,
    dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))

max_iters = 37500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2500))
log_processor = dict(by_epoch=False)
