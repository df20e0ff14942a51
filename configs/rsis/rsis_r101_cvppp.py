# RSIS, CVPPP leaf segmentation (A1) setting of the release (scripts/train_leaves.sh):
# ResNet-101, images 400 x 400, maxseqlen 20, gt_maxseqlen 20, one class (leaf; the release's
# num_classes 2 counts the end-of-sequence class), no class loss (class_loss_after -1), stop
# weight 0.1, curriculum on the number of steps from 2 (+1 per stall of 30 epochs: here every
# 30 epochs), stop loss from epoch 500 once more than 5 steps are decoded, batch 20.
# Data: CVPPP 2017 A1 converted to COCO format (data/cvppp/{train,val}.json); the paper reports
# SBD on the challenge's hidden test set.
_base_ = ['./rsis_r101_voc.py']
num_classes = 1
image_size = (400, 400)
data_root = 'data/cvppp/'
classes = ('leaf',)
model = dict(head=dict(num_classes=num_classes, max_steps=20, max_gt=20, stop_weight=0.1))
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
train_dataloader = dict(batch_size=20, dataset=dict(
    data_root=data_root, data_prefix=dict(img='images/'), metainfo=dict(classes=classes),
    pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    data_root=data_root, data_prefix=dict(img='images/'), metainfo=dict(classes=classes),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator
max_epochs = 1000
train_cfg = dict(max_epochs=max_epochs, val_interval=50)
custom_hooks = [
    # insplug's default hooks (a custom_hooks list replaces the inherited one)
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='AtomicCheckpointHook'),
    dict(type='RSISCurriculumHook', curriculum=True, start_steps=2, increment=1,
         interval=30, class_loss_after=-1, stop_loss_after=500, min_steps=5, by_epoch=True)]
