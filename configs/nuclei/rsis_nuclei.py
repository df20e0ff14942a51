# RSIS (recurrent semantic instance segmentation: a ConvLSTM decoder emitting one instance per
# step, with class and stop outputs) on the DSB2018 nuclei set (../shared/data/nuclei, one
# class), for the nuclei leaderboard (tools/leaderboard.py CONFIGS... --data nuclei). The
# method's CPU demo config (configs/demo/rsis_r18_shapes.py: quarter-width ResNet-18 encoder
# with skips, hidden size 32; random init, nothing downloaded) with the nuclei data
# (configs/_base_/datasets/nuclei_instance.py: 512 px input, flips both ways, COCO segm).
# CAPPED ROW: RSIS emits one instance per step, and nuclei images hold 1-375 nuclei (median
# 28-29, train and val). The cap is the release's CVPPP setting (maxseqlen = gt_maxseqlen = 20):
# 20 steps in training and inference, the 20 largest nuclei of an image as the GT sequence
# (the release's area order). With 20 steps at most 42% of the val nuclei can be found
# (44% of the val images have <= 20 nuclei), so this row's AP has a recall ceiling of 0.42;
# it ranks RSIS under that documented cap (docs/leaderboard.md). Each extra step costs a full
# decoder pass over the stride-2..32 skips, which is what bounds the cap on CPU.
# - stop weight 0.1 (the release's CVPPP value; 66% of the training images have more than 20
#   nuclei, so their stop target is "go on" at every step);
# - mask threshold 0.5 (release's); instances under 1e-4 of the image (~26 px at 512 px) are
#   dropped (release and demo 0.001: 262 px, twice the smallest nuclei).
# Schedule: 440 iterations at batch 2 (2.2 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 4.13 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/rsis_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='RSIS (20-step cap)', family='recurrent (one instance per step)')
num_classes = 1
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    head=dict(num_classes=num_classes, max_steps=20, max_gt=20, stop_weight=0.1,
              test_cfg=dict(min_size=1e-4, max_per_img=20)))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 440
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=min(100, max_iters // 4)),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=min(500, max_iters // 2), max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
