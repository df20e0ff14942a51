# SpatialEmbeddings demo on the bundled shapes set (5 classes), CPU-sized: images resized to
# 128 px and a slim branched ERFNet (widths 16/32/64, 2 + 4 encoder blocks, 1 block per decoder
# stage; about 0.2 M parameters instead of 2.3 M), one seed map per class. Scaled to the small
# images: coordinates span [0, 1] over 128 px (official: 1/1023 per pixel on 2048x1024), the
# initial sigma 0.5 gives a clustering radius of about 9 px (official 1.0: 5.7 px) and the
# minimum cluster size is 8 px (official 128).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
image_size = (128, 128)

model = dict(
    type='BottomUpSegmentor',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8),
    backbone=dict(type='ERFNet', num_branches=2, encoder_channels=(16, 32, 64),
                  num_blocks_mid=2, num_dilation_cycles=1, decoder_channels=(32, 16),
                  decoder_blocks=1),
    head=dict(
        type='SpatialEmbeddingHead',
        num_classes=num_classes,
        in_channels=16,
        n_sigma=1,
        spacing=1 / 128,
        sigma_init=0.5,
        foreground_weight=10.0,
        loss_weights=dict(instance=1.0, sigma=10.0, seed=1.0),
        test_cfg=dict(
            clustering=dict(type='GreedySeedClustering', seed_threshold=0.5,
                            mask_threshold=0.5, min_pixels=8, max_proposals=100),
            foreground_threshold=0.5,
            max_per_img=100)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500))
log_processor = dict(by_epoch=False)
