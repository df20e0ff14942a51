# CountSeg / ILC on the bundled shapes set (CPU demo), trained from IMAGE-LEVEL COUNTS only
# (ImageLevelLabels drops boxes and masks). Same trunk as configs/demo/prm_r18_shapes.py;
# stage 1 for the first 20 iterations, then stage 2 (the release: 20 of 300 epochs).
_base_ = ['./prm_r18_shapes.py']
model = dict(
    type='CountSegSegmentor',
    fc_channels=30,
    train_cfg=dict(sub_pixel_locating_factor=1, stage1_iters=20),
    # peak threshold 0 instead of the release's 20 (responses of a model trained for seconds)
    test_cfg=dict(peak_threshold=0.0, class_threshold=0.5, max_per_img=50, max_peaks=8))
