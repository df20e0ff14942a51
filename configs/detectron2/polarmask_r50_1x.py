# PolarMask, R50 (caffe)-FPN, 1x, COCO as a detectron2 LazyConfig, for detectron2's stock
# tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/polarmask_r50_1x.py
# The official recipe (xieenze/PolarMask configs/polarmask/4gpu/polar_768_1x_r50.py, mmdet 1.0),
# the same values as configs/polarmask/polarmask_r50_1x.py (mmdet) and polarmask_r50_1x.yaml;
# unlike the yaml, images are stretched to 1280 x 768 as in the release. The release clips the
# global gradient norm at 35, as insplug.detectron2.solver.clipped_optimizer does.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.core.polarmask.head import PolarMaskHeadNet
from insplug.detectron2.polarmask import InsplugPolarMask
from insplug.detectron2.solver import clipped_optimizer

num_classes = 80
channels = 256
model = L(InsplugPolarMask)(
    # MSRA (caffe) R-50, FrozenBN, stem + res2 frozen; FPN on res3-res5 + P6/P7 from P5
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
    head=L(PolarMaskHeadNet)(in_channels=channels, num_classes=num_classes,
                             feat_channels=channels, num_convs=4, num_levels=5, num_rays=36,
                             norm_groups=32, prior_prob=0.01),
    in_features=['p3', 'p4', 'p5', 'p6', 'p7'],
    strides=[8, 16, 32, 64, 128],
    sizes_of_interest=[64, 128, 256, 512],
    pixel_mean=[102.9801, 115.9465, 122.7717],  # BGR, caffe weights
    pixel_std=[1.0, 1.0, 1.0],
    radius=1.5,
    box_offset=1.0,
    loss_opts=dict(focal_alpha=0.25, focal_gamma=2.0, loss_weight_cls=1.0, loss_weight_bbox=1.0,
                   loss_weight_mask=1.0, loss_weight_centerness=1.0),
    test_opts=dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100,
                   centerness_bias=0.5),
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.augmentations = [
    L(T.Resize)(shape=(768, 1280)),  # (h, w), aspect ratio not kept (the release)
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16  # 4 GPUs x 4 images
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(768, 1280))]

# SGD lr 0.01, bias lr x2 and no bias decay, gradients clipped at norm 35
optimizer = L(clipped_optimizer)(
    params=L(get_default_optimizer_params)(base_lr='${..lr}', weight_decay_norm=1e-4,
                                           bias_lr_factor=2.0, weight_decay_bias=0.0),
    optimizer='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4,
    clip_max_norm=35.0, clip_norm_type=2.0)

# 12 epochs of 7330 iterations (117266 images / 16), lr x0.1 after epochs 8 and 11, 500
# linear warm-up iterations from 1/3
train = get_config('common/train.py').train
train.max_iter = 87960
train.eval_period = 7330
train.checkpointer.period = 7330
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[58640, 80630, 87960]),
    warmup_length=500 / 87960,
    warmup_method='linear',
    warmup_factor=1.0 / 3,
)
