# SharpMask at the official setting (SharpMask.lua, TrainerSharpMask.lua, train.lua -dm):
# starts from a trained DeepMask (load_from), adds the top-down refinement (km = ks = 32; skips
# layer3 / layer2 / layer1 / stem), trains only the refinement on mask windows (hfreq = 0) with
# labels at gSz = iSz = 160, plain SGD (no momentum, no weight decay; lr 1e-3 -> 5e-4 at epoch
# 51 -> 1e-4 at epoch 81, mask loss summed over the batch of 32: lr x 32 here).
_base_ = './deepmask_r50_coco.py'
model = dict(
    trunk_pretrained=None,
    net=dict(label_size=160, sharpmask=dict(km=32, ks=32, hidden=(64, 64, 64, 32))),
    train_cfg=dict(stage='sharpmask', mask_per_image=4, pos_per_image=0, neg_per_image=0))
load_from = 'work_dirs/deepmask_r50_coco/iter_600000.pth'  # a trained DeepMask
load_from_strict = False  # the DeepMask checkpoint has no refinement modules (new here)
train_cfg = dict(max_iters=1200000, val_interval=100000)
optim_wrapper = dict(optimizer=dict(lr=0.032, momentum=0.0, weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, milestones=[200000], gamma=0.5),
    dict(type='MultiStepLR', by_epoch=False, milestones=[320000], gamma=0.2),
]
