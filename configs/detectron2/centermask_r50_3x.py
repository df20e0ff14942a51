# CenterMask, R50-FPN, multi-scale 3x, COCO as a detectron2 LazyConfig, for detectron2's stock
# tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/centermask_r50_3x.py
# The official recipe (youngwanLEE/centermask2 centermask_R_50_FPN_ms_3x.yaml), the same values
# as configs/centermask/centermask_r50_3x.py (mmdet) and centermask_r50_3x.yaml: GeneralizedRCNN
# with InsplugFCOS proposals (100 post-NMS in training, 50 at test) and InsplugCenterROIHeads
# (SAG-Mask + MaskIoU on P3-P5, eq. 2 level assignment).
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler
import torch

from insplug.core.centermask.heads import MaskIoUHead
from insplug.detectron2.centermask import InsplugCenterROIHeads, InsplugSpatialAttentionMaskHead
from insplug.detectron2.fcos import InsplugFCOS, InsplugFCOSHead

num_classes = 80
channels = 256
model = L(GeneralizedRCNN)(
    # MSRA R-50 (stride in the 1x1 conv), FrozenBN, stem + res2 frozen (FREEZE_AT 2)
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True,
                                                 norm='FrozenBN'),
            out_features=['res3', 'res4', 'res5'],
            freeze_at=2,
        ),
        in_features=['res3', 'res4', 'res5'],
        out_channels=channels,
        top_block=L(LastLevelP6P7)(in_channels=channels, out_channels=channels,
                                   in_feature='p5'),
    ),
    proposal_generator=L(InsplugFCOS)(
        head=L(InsplugFCOSHead)(in_channels=channels, num_classes=num_classes, num_cls_convs=4,
                                num_box_convs=4, num_share_convs=0, norm='GN', norm_groups=32,
                                use_scale=True, num_levels=5, prior_prob=0.01,
                                centerness_on_reg=True, norm_reg_targets=True),
        in_features=['p3', 'p4', 'p5', 'p6', 'p7'],
        strides=[8, 16, 32, 64, 128],
        sizes_of_interest=[64, 128, 256, 512],
        num_classes=num_classes,
        center_sample_radius=1.5,
        loss_opts=dict(loss_type='giou', iou_smooth=1.0, box_quality='ctrness',
                       cls_normalizer='fg', focal_alpha=0.25, focal_gamma=2.0,
                       loss_weight_cls=1.0),
        test_opts=dict(score_thr=0.05, nms_pre=1000, max_per_img=50, nms_thr=0.6,
                       thresh_with_ctr=False, candidate_mode='threshold_topk', score='sqrt'),
        train_opts=dict(score_thr=0.05, nms_pre=1000, max_per_img=100, nms_thr=0.6,
                        thresh_with_ctr=False, candidate_mode='threshold_topk', score='sqrt'),
        clip_before_nms=False,
        yield_proposal=True,
    ),
    roi_heads=L(InsplugCenterROIHeads)(
        in_features=['p3', 'p4', 'p5'],
        strides=[8, 16, 32],
        mask_head=L(InsplugSpatialAttentionMaskHead)(in_channels=channels, conv_channels=256,
                                                     num_convs=4, num_classes=num_classes,
                                                     class_agnostic=False),
        maskiou_head=L(MaskIoUHead)(in_channels=channels, conv_channels=256, num_convs=4,
                                    fc_channels=1024, roi_size=14, num_classes=num_classes),
        pooler_resolution=14,
        pos_iou_thr=0.5,
        max_pos_per_img=128,  # BATCH_SIZE_PER_IMAGE 512 x POSITIVE_FRACTION 0.25
        append_gt=True,
        maskiou_loss_weight=1.0,
    ),
    pixel_mean=[103.530, 116.280, 123.675],  # BGR input, MSRA weights
    pixel_std=[1.0, 1.0, 1.0],
    input_format='BGR',
)

# COCO, polygon masks, shorter side 640..800 (max 1333) + flip in training, 800 at test
dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.total_batch_size = 16

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.01, momentum=0.9, weight_decay=1e-4)

train = get_config('common/train.py').train
train.max_iter = 270000
train.checkpointer.period = 10000
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[210000, 250000, 270000]),
    warmup_length=1000 / 270000,
    warmup_method='linear',
    warmup_factor=0.001,
)
