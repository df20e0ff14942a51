# InstanceFCN (instance-sensitive score maps, class-agnostic segment proposals) on the DSB2018
# nuclei set (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (instancefcn_r18_shapes: quarter-width ResNet-18, dilated to stride 8, k = 3, windows of
# m = 9 cells = 72 px, canonical object side 41 px +- half an octave; random init, nothing
# downloaded) with the nuclei data (configs/_base_/datasets/nuclei_instance.py: 512 px input,
# flips both ways) and settings for small dense touching nuclei (up to 375 per image, ~13-80 px
# across at 512 px). Segments carry no class; on a one-class set a segment IS an instance
# (label 0, scored by the objectness branch), so the board scores it with COCO segm.
# - pyramid 2^-1 .. 2^1.5 (step 0.5) for training (one random scale per iteration) and
#   inference: a nucleus of side s is at the canonical 41 px at scale 41/s, 0.5 (80 px) .. 2.8
#   (14 px); the paper's 2^-1.5 .. 2^0.5 is for COCO objects, far larger;
# - instance-sensitive maps are what separates touching nuclei (k x k relative positions);
#   k = 3 (paper 5 with m = 21 at 224 px windows) keeps 3 x 3 cells per part in the 72 px
#   window;
# - 128 sampled windows per image (demo 64, paper 256 per image): nuclei images hold tens of
#   objects; the 500 best windows of each scale by objectness are assembled (3000 over the
#   pyramid; a nucleus is at its canonical size on 1-2 scales, so 500 per scale covers the
#   375 nuclei of the densest image), mask NMS at IoU 0.8 (the paper's), 400 kept.
# Schedule: 650 iterations at batch 2 (3.2 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 2.78 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../instancefcn/instancefcn_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='InstanceFCN', family='proposal (instance-sensitive maps)')
_scales = tuple(2.0 ** (e / 2) for e in range(-2, 4))
model = dict(
    train_cfg=dict(scales=_scales, num_samples=128),
    test_cfg=dict(scales=_scales, pre_nms=500, nms_iou=0.8, max_per_img=400))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 650
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
