# EmbedMask, ResNet-50-FPN, 800 x 1333, 1x, batch 16, lr 0.01 (COCO).
# Official: yinghdb/EmbedMask configs/embed_mask/embed_mask_R50_1x.yaml.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './embedmask_r50_fpn_base.py',
]
train_dataloader = dict(batch_size=2, num_workers=2)
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
