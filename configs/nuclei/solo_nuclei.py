# SOLO (mmdet 3's own SOLO / SOLOHead, Matrix NMS) on the DSB2018 nuclei set
# (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (solo_r18_shapes: ResNet-18 + FPN 64, towers 2 x 64;
# random init, nothing downloaded) with the nuclei data (configs/_base_/datasets/
# nuclei_instance.py: 512 px input, flips both ways, COCO segm) and settings for small dense
# touching nuclei (up to 375 per image, ~13-80 px across at 512 px):
# - grids 40/36/24/16/12 (the release's) with the release's scale ranges halved (1333 -> 512 px
#   input), as solov2_nuclei.py: nuclei (13-80 px) fall on the 40 and 36 grids, one cell
#   ~13 px, so touching nuclei get their own cells; vanilla SOLO predicts S^2 mask channels
#   per level (1600 + 1296 at stride 8: the cost of this method, kept);
# - 1000 candidates before Matrix NMS, 400 kept.
# Schedule: 300 iterations at batch 2 (1.5 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 6.07 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/solo_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='SOLO (mmdet)', family='one-stage (grid)')
num_classes = 1
model = dict(
    mask_head=dict(num_classes=num_classes, num_grids=[40, 36, 24, 16, 12],
                   scale_ranges=((1, 48), (24, 96), (48, 192), (96, 384), (192, 2048))),
    test_cfg=dict(nms_pre=1000, max_per_img=400))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=min(100, max_iters // 4)),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=min(500, max_iters // 2), max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
