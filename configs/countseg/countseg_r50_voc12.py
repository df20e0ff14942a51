# CountSeg / ILC (Cholakkal et al., CVPR 2019) at the official setting (GuoleiSun/CountSeg,
# train/config_counting_pascal07.yml; the instance-segmentation model is trained on VOC 2012
# the same way): FC-ResNet-50 with a 1x1 conv to 60 maps (3 x 20), split into the
# classification and density branches (BN-ReLU-1x1 conv each), sub-pixel factor 1, window 3,
# median peak filter; stage-1 loss for 20 epochs, then stage 2 (joint_train, 300 epochs),
# subitizing range 1-4 (t = 5), ranking weight 0.1; SGD lr 0.01, trunk x 0.01, momentum 0.9,
# wd 1e-4, batch 16, 448 x 448. Trained from image-level COUNTS only. Inference: the release's
# demo-pascal (class threshold 0.5, peak threshold 20, param (0.95, 1e-5, 0.8, 0.2)), proposals
# from a file (COB / MCG in the release).
_base_ = ['../prm/prm_r50_voc12.py']
model = dict(
    type='CountSegSegmentor',
    fc_channels=60,
    train_cfg=dict(win_size=3, sub_pixel_locating_factor=1, filter_type='median',
                   stage1_iters=20 * 92,  # 20 epochs of 1464 / 16 images (VOC 2012 seg train)
                   stage1_subitizing=5, stage2_subitizing=5, rank_weight=0.1,
                   rare_fraction=0.2, neg_prob=1.1),
    test_cfg=dict(sub_pixel_locating_factor=1, class_threshold=0.5, peak_threshold=20.0,
                  peak_rule='countseg', density_factor=0.2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=50)
