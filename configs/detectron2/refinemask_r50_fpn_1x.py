# RefineMask, R50-FPN, 1x, COCO as a detectron2 LazyConfig, for detectron2's stock
# tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/refinemask_r50_fpn_1x.py
# detectron2's Mask R-CNN R50-FPN 1x recipe with RefineMask's RoI heads and the values of the
# official configs/refinemask/coco/r50-refinemask-1x.py (zhanggang001/RefineMask; 37.3 mask AP on
# COCO val2017), the same as configs/refinemask_r50.py (mmdet) and refinemask_r50_fpn_1x.yaml.
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.solver.build import get_default_optimizer_params

from insplug.detectron2 import RefineMaskHead, RefineMaskROIHeads
from insplug.detectron2.solver import clipped_optimizer

model = get_config('common/models/mask_rcnn_fpn.py').model
dataloader = get_config('common/data/coco.py').dataloader
lr_multiplier = get_config('common/coco_schedule.py').lr_multiplier_1x
train = get_config('common/train.py').train

roi_heads = model.roi_heads
roi_heads._target_ = RefineMaskROIHeads
roi_heads.semantic_in_feature = 'p2'  # the semantic branch reads the stride-4 FPN level
# the official config doubles both box-head losses
roi_heads.box_predictor.loss_weight = {'loss_cls': 2.0, 'loss_box_reg': 2.0}
roi_heads.mask_pooler.output_size = 14
roi_heads.mask_pooler.sampling_ratio = 0
roi_heads.mask_head = L(RefineMaskHead)(
    num_classes='${..num_classes}',
    num_convs_instance=2,
    conv_in_channels_instance=256,
    conv_out_channels_instance=256,
    num_convs_semantic=4,
    conv_in_channels_semantic=256,
    conv_out_channels_semantic=256,
    dilations=[1, 3, 5],
    semantic_out_stride=4,
    stage_num_classes=None,  # None: class-specific at every stage (official 1x)
    stage_sup_size=[14, 28, 56, 112],
    stage_instance_loss_weight=[0.25, 0.5, 0.75, 1.0],
    semantic_loss_weight=1.0,
    boundary_width=2,
    start_stage=1,
    test_start_stage=1,
)

# SGD lr 0.02 for 16 images, gradient clipping at norm 35 as in the official release
optimizer = L(clipped_optimizer)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    optimizer='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4,
    clip_max_norm=35.0, clip_norm_type=2.0)
# the official 500-iteration warm-up (detectron2's common 1x schedule has 1000)
lr_multiplier.warmup_length = 500 / train.max_iter
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'
