# Recurrent pixel embedding (Kong & Fowlkes) on the DSB2018 nuclei set
# (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (recurrent_embedding_erfnet_shapes: slim branched ERFNet, 8-d unit-sphere embeddings, a
# semantic branch, 5 recurrent mean-shift loops at bandwidth 0.1 in training; random init,
# nothing downloaded) with the nuclei data (configs/_base_/datasets/nuclei_instance.py: 512 px
# input, flips both ways, COCO segm) and settings for small dense touching nuclei (up to 375
# per image, ~13-80 px across at 512 px):
# - margins and bandwidths are on the unit sphere, scale free: the release's (as the demo);
# - losses on 1/256 of the pixels (loss_stride 16: 1024 random pixels of a 512 x 512 image,
#   redrawn every iteration; the demo's 1/64 gives 4096, and the training loops build a P x P
#   kernel per loop: 16.8 s per iteration on one thread, ~90% of it in those loops);
# - inference: the loops run on a strided subset of up to 4096 foreground points (demo 512:
#   at ~50 k foreground pixels a stride of 100 would skip whole small nuclei; 4096 gives each
#   nucleus >= ~10 points), up to 512 modes merged (default 256 < 375 nuclei), clusters of
#   >= 32 px (a 13 px nucleus has ~130 px), at most 400 per image.
# Schedule: 490 iterations at batch 2 (2.4 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 3.65 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/recurrent_embedding_erfnet_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='Recurrent pixel embedding', family='bottom-up')
num_classes = 1
model = dict(
    head=dict(num_classes=num_classes, loss_stride=16,
              test_cfg=dict(clustering=dict(min_pixels=32, max_points=4096, max_seeds=512),
                            min_pixels=32, max_per_img=400)))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 490
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
