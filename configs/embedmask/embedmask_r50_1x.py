# EmbedMask, ResNet-50-FPN, 800 x 1333, 1x (COCO), the released model of the official release.
# Official: yinghdb/EmbedMask (commit e9d6142) configs/embed_mask/embed_mask_R50_1x.yaml +
# fcos_core/config/defaults.py: 90k iterations at batch 16 (8 GPUs x 2), BASE_LR 0.01,
# WEIGHT_DECAY 1e-4, steps 60k / 80k, WARMUP_METHOD "constant" (lr / 3 for 500 iterations),
# bias lr x2 without weight decay (see embedmask_r50_fpn_base.py), horizontal flips.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
    './embedmask_r50_fpn_base.py',
]
train_dataloader = dict(batch_size=2, num_workers=2,
                        sampler=dict(type='InfiniteSampler', shuffle=True))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 90000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=10000)
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[60000, 80000], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
