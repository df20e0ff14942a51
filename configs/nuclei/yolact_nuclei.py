# YOLACT on the DSB2018 nuclei set
# (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (yolact_protonet_r18_shapes: ResNet-18 + FPN 64, 16 prototypes;
# random init, nothing downloaded) with the nuclei data (configs/_base_/datasets/
# nuclei_instance.py: 512 px input, flips both ways, COCO segm) and settings for small dense
# touching nuclei (up to 375 per image, ~13-80 px across at 512 px):
# - priors 16/32/64/128 px on P3-P6 with prior_max_size 512 (the input size, as the release
#   uses 550): the 13-80 px nuclei match the first three levels;
# - 1000 candidates before fast NMS (top_k), 400 kept per image; prototypes at stride 4.
# Schedule: 440 iterations at batch 2 (2.2 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 4.06 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/yolact_protonet_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='YOLACT', family='one-stage')
num_classes = 1
model = dict(
    bbox_head=dict(num_classes=num_classes, prior_max_size=512),
    mask_head=dict(num_classes=num_classes),
    test_cfg=dict(top_k=1000, max_per_img=400))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 440
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=min(100, max_iters // 4)),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=min(500, max_iters // 2), max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
