# BoxCaseg on the bundled shapes set (CPU demo): a narrow HRNet (one block per branch, widths
# 8/16/32/64) from scratch, 64 px crops.
# Box images: the shapes training set with its masks dropped (BoxesOnly); salient images:
# single-object crops of the same set, written once with
#   python -m insplug.core.boxcaseg.salient --ann data/shapes/train/annotations.json \
#       --img-dir data/shapes/train/images --out data/shapes/salient
# Evaluation: box-conditioned masks of the val boxes (the pseudo-mask step) with the COCO
# segm metric against the val masks.
_base_ = ['./boxcaseg_hrnet_w48_voc.py']

data_root = 'data/shapes/'
crop_size = 64
model = dict(
    crop_size=crop_size,
    in_channels=8 + 16 + 32 + 64,
    backbone=dict(init_cfg=None, extra=dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1,),
                    num_channels=(16,)),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1),
                    num_channels=(8, 16)),
        stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(1, 1, 1),
                    num_channels=(8, 16, 32)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                    num_channels=(8, 16, 32, 64)))),
    max_box_crops=32)

box_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='BoxesOnly'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
salient_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
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
    batch_size=4, num_workers=2,
    dataset=dict(
        _delete_=True,
        type='BoxSalientDataset',
        dataset=dict(type='ShapesDataset', data_root=data_root,
                     ann_file='train/annotations.json', data_prefix=dict(img='train/images/'),
                     filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=box_pipeline),
        salient=dict(type='ShapesDataset', data_root=data_root,
                     ann_file='salient/annotations.json', data_prefix=dict(img='salient/images/'),
                     filter_cfg=dict(filter_empty_gt=True), pipeline=salient_pipeline)))
val_dataloader = dict(
    batch_size=4, num_workers=2,
    dataset=dict(_delete_=True, type='ShapesDataset', data_root=data_root,
                 ann_file='val/annotations.json', data_prefix=dict(img='val/images/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='InsplugCocoMetric',
                     ann_file=data_root + 'val/annotations.json', metric=['segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.01))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=12, by_epoch=True),
]
