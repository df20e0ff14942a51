# Recurrent attention (Ren & Zemel, CVPR 2017), stage 1 of the release's CVPPP schedule
# (renmengye/rec-attend-public, run_cvppp.sh, box_model_train.py): the box network alone
# (controller CNN 8 layers 8-64 channels, pools 1,2,1,2,1,2,2,2 -> 7 x 7 glimpse map; LSTM 256
# with 5 glimpses; one-layer controller MLP) on 224 x 224 leaf images, timespan 21 (20 leaves
# + 1), the canvas always fed the greedily matched GT leaf (uniform 0-0.3 noise), soft-IoU box
# loss + monotonic score loss. Adam lr 1e-3, x0.9 every 5000 iterations, 60000 iterations of 5.
# Then train configs/recurrent_attention/recurrent_attention_cvppp.py from this checkpoint.
# CVPPP (A1, leaf segmentation) in COCO format under data/cvppp/ (one class, 'leaf').
_base_ = ['./recurrent_attention_cvppp.py']

model = dict(net=dict(stage='box', min_box_padding=10.0))  # box_model.py: get_gt_box default
max_iters = 60000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 ** 9)
param_scheduler = [dict(type='StepLR', step_size=5000, gamma=0.9, by_epoch=False, begin=0,
                        end=max_iters)]
load_from = None
