# SpatialEmbeddings on the DSB2018 nuclei set
# (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (spatialembeddings_erfnet_shapes: slim branched ERFNet;
# random init, nothing downloaded) with the nuclei data (configs/_base_/datasets/
# nuclei_instance.py: 512 px input, flips both ways, COCO segm) and settings for small dense
# touching nuclei (up to 375 per image, ~13-80 px across at 512 px):
# - coordinate spacing 1/256 per pixel (the release: 1/1023 on 2048 px; here the map spans
#   [0, 2] over 512 px as the release's spans [0, 2] over 2048), so sigma 0.5 clusters within
#   ~18 px, a median nucleus radius;
# - clusters of >= 32 px (a 13 px nucleus has ~130 px), at most 400 per image.
# Schedule: 600 iterations at batch 2 (3.0 epochs of the 405 training images),
# sized for ~30 min on 2 idle CPU cores: a 2-iteration smoke run measured 6.2 s / iteration
# on a shared 2-core machine under a load of ~3-5, taken as about twice the idle time; linear
# warm-up, LR x0.1 at 75% and 90% of the iterations.
_base_ = ['../demo/spatialembeddings_erfnet_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='SpatialEmbeddings', family='bottom-up')
num_classes = 1
model = dict(
    head=dict(num_classes=num_classes, spacing=1 / 256,
              test_cfg=dict(clustering=dict(min_pixels=32, max_proposals=400),
                            max_per_img=400)))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[450, 540], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=500, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
