# The DSB2018 nuclei set (../shared/data/nuclei: 405 train / 77 val images, one class, 1-375
# small touching nuclei per image; mostly 256x256, up to 1388x1040), COCO segm evaluation.
# Used by configs/nuclei/<method>_nuclei.py, which inherit their method's demo config and this
# file, and take the variables below (prefixed ``nuclei_`` so they do not clash with the demo
# config's own dataloaders) with ``train_dataloader = {{_base_.nuclei_train_dataloader}}``.
#
# Input 512 px (keep ratio): the common 256x256 images are upscaled x2, so nuclei (median area
# 330 px^2, 5th percentile 42 px^2 at the native scale) become ~36 px across (5th percentile
# ~13 px), large enough for stride-4/8 features; the few large images are downscaled. Flips in
# both directions (microscopy has no up/down). The COCO metric counts up to 1000 detections per
# image (InsplugCocoMetric), so the models' 400 kept detections are all scored.
nuclei_data_root = '../shared/data/nuclei/'
nuclei_image_size = (512, 512)
nuclei_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=nuclei_image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
nuclei_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=nuclei_image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
nuclei_train_dataloader = dict(
    _delete_=True,
    batch_size=2,
    num_workers=2,
    persistent_workers=False,  # bit-exact --resume (see shapes_instance.py)
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='NucleiDataset',
        data_root=nuclei_data_root,
        ann_file='train/annotations.json',
        data_prefix=dict(img='train/images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=2),
        pipeline=nuclei_train_pipeline))
nuclei_val_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='NucleiDataset',
        data_root=nuclei_data_root,
        ann_file='val/annotations.json',
        data_prefix=dict(img='val/images/'),
        test_mode=True,
        pipeline=nuclei_test_pipeline))
nuclei_val_evaluator = dict(
    _delete_=True,
    type='InsplugCocoMetric',
    ann_file=nuclei_data_root + 'val/annotations.json',
    metric=['segm'],
    format_only=False)
