# Recurrent attention (Ren & Zemel, "End-to-End Instance Segmentation with Recurrent Attention",
# CVPR 2017), the release's CVPPP setting (renmengye/rec-attend-public: run_cvppp.sh,
# full_model_train.py, cmd_args_parser.py): paper CVPPP leaf segmentation SBD 84.9 (test).
# - fixed 224 x 224 input, timespan 21 (20 leaves + 1), 48 x 48 attention patch;
# - controller CNN 3x3 x 8 layers, 8,8,16,16,32,32,64,64 channels, pools 1,2,1,2,1,2,2,2;
#   LSTM 256 reading 5 glimpses (glimpse MLP 2 layers); one-layer controller MLP (9 outputs);
# - patch CNN 3x3 x 6 layers, 8,8,16,16,32,32, pools 1,2,1,2,1,2; DCNN 3x3 x 7 layers,
#   32,32,16,16,8,8,1, unpools 2,1,2,1,2,1,1, no skips; fixed gains (patch 1, output e^2),
#   filter variance = window stride, canvas gradient stopped; per-step batch norm;
# - losses: matched soft IoU of masks and of the attention boxes (GT boxes padded by 20 % or
#   20 px), monotonic score BCE (weight 1);
# - GT feeding ("knob"): masks with probability 0.5^((it - 3000) / 700) x (1 + log(1 + 3t))
#   (1 before iteration 3000), boxes never (offset -50000: the box net is pretrained);
# - Adam lr 1e-3 (eps 1e-7), L2 5e-5 on weights, gradients clipped to [-1, 1], x0.8 every
#   5000 iterations, 30000 iterations of 5 images; no flips (the release forces them off);
# - inference: masks weighted by their scores, one label per pixel, > 0.3; steps with
#   score > 0.5 are instances.
# Schedule: first train recurrent_attention_box_cvppp.py (the box network, 60000 iterations),
# then this config with `--cfg-options load_from=BOX_CHECKPOINT` (the release loads the
# controller CNN, LSTM, glimpse and controller MLPs from it; load_from_strict = False lets the
# patch networks and the score layer start fresh and drops the box stage's own score layer).
# CVPPP (A1, leaf segmentation) in COCO format under data/cvppp/ (one class, 'leaf').
_base_ = [
    '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
classes = ('leaf', )
num_classes = 1
metainfo = dict(classes=classes)
data_root = 'data/cvppp/'
image_size = (224, 224)

model = dict(
    type='RecurrentAttentionSegmentor',
    num_classes=num_classes,
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_size_divisor=1),
    net=dict(input_size=image_size, timespan=21, filter_size=(48, 48),
             ctrl_cnn_filter_size=(3, 3, 3, 3, 3, 3, 3, 3),
             ctrl_cnn_depth=(8, 8, 16, 16, 32, 32, 64, 64),
             ctrl_cnn_pool=(1, 2, 1, 2, 1, 2, 2, 2), ctrl_rnn_hid_dim=256,
             num_ctrl_rnn_iter=5, num_glimpse_mlp_layers=2, num_ctrl_mlp_layers=1,
             attn_cnn_filter_size=(3, 3, 3, 3, 3, 3), attn_cnn_depth=(8, 8, 16, 16, 32, 32),
             attn_cnn_pool=(1, 2, 1, 2, 1, 2), attn_dcnn_filter_size=(3, 3, 3, 3, 3, 3, 3),
             attn_dcnn_depth=(32, 32, 16, 16, 8, 8, 1), attn_dcnn_pool=(2, 1, 2, 1, 2, 1, 1),
             add_skip_conn=False, fixed_gamma=True, stop_canvas_grad=True,
             box_padding_ratio=0.2, min_box_padding=20.0),
    train_cfg=dict(knob=dict(use_knob=True, base=1.0, decay=0.5, steps_per_decay=700,
                             box_offset=-50000, segm_offset=3000, use_timescale=True)),
    test_cfg=dict(score_thr=0.5, mask_threshold=0.3, stop_rule='threshold'))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=5,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='train/annotations.json',
                 data_prefix=dict(img='train/images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='val/annotations.json',
                 data_prefix=dict(img='val/images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val/annotations.json')
test_evaluator = val_evaluator

max_iters = 30000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-3, eps=1e-7, weight_decay=5e-5),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
                     clip_grad=dict(type='value', clip_value=1.0))
param_scheduler = [dict(type='StepLR', step_size=5000, gamma=0.8, by_epoch=False, begin=0,
                        end=max_iters)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000))
log_processor = dict(by_epoch=False)
load_from_strict = False  # stage 2 starts from the stage-1 (box network) checkpoint
