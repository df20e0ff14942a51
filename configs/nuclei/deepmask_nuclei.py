# DeepMask (class-agnostic mask proposals) on the DSB2018 nuclei set
# (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (deepmask_r18_shapes: quarter-width ResNet-18 trunk, trainable BN, iSz 64 / wSz 96 windows,
# canonical object side objSz 37 px, 16x16 masks upsampled to 32 labels; random init, nothing
# downloaded) with the nuclei data (configs/_base_/datasets/nuclei_instance.py: 512 px input,
# flips both ways) and settings for small dense touching nuclei (up to 375 per image, ~13-80 px
# across at 512 px). DeepMask proposals carry no class; on a one-class set a proposal IS an
# instance (label 0, scored by the score branch), so the board evaluates it with COCO segm like
# every other row (the demo's class-agnostic proposal AR is replaced by segm AP).
# - inference pyramid 2^-1 .. 2^1.5 (step 0.5, the release's): a nucleus of side s is seen at
#   scale ~37/s, i.e. 0.46 (80 px) .. 2.8 (13 px); top 400 proposals (release 1000 on COCO;
#   the board keeps 400 detections per method), mask threshold 0.2 (release's);
# - training: 16 mask windows and 8 + 8 score windows per image (demo 8 / 4 + 4; the release 4 /
#   2 + 2 at batch 32): a nuclei image holds tens of objects, so more windows per image cost no
#   extra trunk pass; jitter +-6 px (the release's 16 px scaled by iSz 64 / 160, as the demo) and
#   1/4 octave; objects below 16 px^2 or 3 px a side are skipped (hardly any nucleus at 512 px);
# - score weight 1 (release 1/32 over 300 epochs: a short run needs the score branch to
#   learn as fast as the mask branch, as in the demo).
# SharpMask's row (sharpmask_nuclei.py) starts from this entry's final checkpoint: its second
# stage trains only the refinement on the trained DeepMask (trunk and heads frozen).
# Schedule: 1810 iterations at batch 2 (8.9 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 0.99 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../deepmask/deepmask_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='DeepMask', family='proposal (mask windows)')
model = dict(
    train_cfg=dict(mask_per_image=16, pos_per_image=8, neg_per_image=8),
    test_cfg=dict(smin=-1.0, smax=1.5, sstep=0.5, num_proposals=400, mask_thr=0.2))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 1810
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
