# Recurrent attention, the release's KITTI car setting (run_kitti.sh, full_model_train.py):
# fixed 128 x 448 input, timespan 20 (19 cars + 1), 48 x 48 patch; controller CNN 16,16,32,32,
# 64,64,64,64 channels, pools 2,2,1,2,1,2,1,2 (4 x 14 glimpse map); patch CNN 16,32,32,64,64,96,
# pools 1,2,1,2,1,2; DCNN 64,64,32,32,16,16,1 with skips (attn_cnn_skip 1,0,1,0,1,0,1,0);
# predicted filter variances (dynamic_var) and gains (no fixed_gamma); GT feeding: boxes from
# iteration 100, masks from 8000, half-life 1500, time-scaled; Adam lr 1e-3, x0.85 every 5000,
# 100000 iterations of 2 images. Paper (KITTI test): MWCov 80.0, MUCov 66.9, AvgFP 0.764,
# AvgFN 0.201.
# NOT the full release setting: the release also feeds its foreground FCN's outputs (8
# orientation maps + 1 foreground map, fg_model.py) to both CNNs; that network is not ported
# (docs/deviations/recurrent_attention.md), so this config trains on image + canvas only.
# KITTI instance segmentation (Ren & Zemel's split) in COCO format under data/kitti/ ('car').
_base_ = ['./recurrent_attention_cvppp.py']
classes = ('car', )
metainfo = dict(classes=classes)
data_root = 'data/kitti/'
image_size = (128, 448)

model = dict(
    net=dict(input_size=image_size, timespan=20,
             ctrl_cnn_depth=(16, 16, 32, 32, 64, 64, 64, 64),
             ctrl_cnn_pool=(2, 2, 1, 2, 1, 2, 1, 2),
             attn_cnn_depth=(16, 32, 32, 64, 64, 96),
             attn_dcnn_depth=(64, 64, 32, 32, 16, 16, 1),
             attn_cnn_skip=(True, False, True, False, True, False, True, False),
             add_skip_conn=True, dynamic_var=True, fixed_gamma=False),
    train_cfg=dict(knob=dict(decay=0.5, steps_per_decay=1500, box_offset=100,
                             segm_offset=8000, use_timescale=True)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size[::-1], keep_ratio=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size[::-1], keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, metainfo=metainfo,
                                                   pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val/annotations.json')
test_evaluator = val_evaluator

max_iters = 100000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
param_scheduler = [dict(type='StepLR', step_size=5000, gamma=0.85, by_epoch=False, begin=0,
                        end=max_iters)]
