# RSIS, Cityscapes setting: the release has no training script for Cityscapes; this uses its
# args.py defaults with Cityscapes' 8 instance classes and 20 steps / 20 GT instances, images
# 256 x 512. Data: Cityscapes fine instances converted to COCO format
# (data/cityscapes/{train,val}.json); the paper reports AP with cityscapesScripts.
_base_ = ['./rsis_r101_voc.py']
num_classes = 8
image_size = (512, 256)
data_root = 'data/cityscapes/'
classes = ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
model = dict(head=dict(num_classes=num_classes, max_steps=20, max_gt=20))
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
train_dataloader = dict(dataset=dict(
    data_root=data_root, data_prefix=dict(img='leftImg8bit/'), metainfo=dict(classes=classes),
    pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    data_root=data_root, data_prefix=dict(img='leftImg8bit/'), metainfo=dict(classes=classes),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator
