# BoxCaseg on the nuclei board, step 2 of 3: the box-conditioned segmenter, trained on the
# nuclei training images with their masks dropped (boxes only) plus salient single-object images
# with masks. The row is boxcaseg_nuclei.py (step 3: a Mask R-CNN trained on this segmenter's
# pseudo masks); list this entry before it, with the same --out (insplug/cli/board_steps.py).
# - salient images (step 1; the release's DUT-TR-Single): `leaderboard.salient='shapes'` cuts
#   single-object crops from a generated shapes set; crops of the nuclei set would hand a
#   box-supervised method nuclei masks. Outside the board: generate a shapes set, then
#   `python -m insplug.core.boxcaseg.salient --ann data/shapes/train/annotations.json
#   --img-dir data/shapes/train/images --out data/shapes/salient`.
# - the CPU demo's narrow HRNet (configs/boxcaseg/boxcaseg_hrnet_tiny_shapes.py, random init) and
#   64-px crops: a nucleus is 13-80 px, so a crop keeps it at about its own resolution; 32 box
#   crops sampled per batch of 2 images (the demo's cap; an image holds up to 375 nuclei).
# - its own evaluation segments the val set's true boxes (the pseudo-mask step): an oracle-box
#   AP, listed under the board, not ranked.
# Schedule: sized for 30 CPU-minutes of one thread, as every board entry (see the header of
# mask_rcnn_nuclei.py); `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 0.22 CPU s / iteration at batch 2, data loading included: 8090 iterations (40 epochs
# of the 405 training images, the release's VOC schedule length); linear warm-up, then poly.
_base_ = ['../boxcaseg/boxcaseg_hrnet_tiny_shapes.py']
leaderboard = dict(method='BoxCaseg segmenter', family='box-supervised',
                   step_of='boxcaseg_nuclei', salient='shapes')
nuclei_data_root = '../shared/data/nuclei/'
train_dataloader = dict(
    batch_size=2,
    dataset=dict(dataset=dict(type='NucleiDataset', data_root=nuclei_data_root,
                              _delete_=True, ann_file='train/annotations.json',
                              data_prefix=dict(img='train/images/'),
                              filter_cfg=dict(filter_empty_gt=True, min_size=4),
                              pipeline={{_base_.box_pipeline}})))
val_dataloader = dict(batch_size=1, dataset=dict(type='NucleiDataset',
                                                 data_root=nuclei_data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=nuclei_data_root + 'val/annotations.json')
test_evaluator = val_evaluator

max_iters = 8090
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=min(100, max_iters // 4)),
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=min(500, max_iters // 2), max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
