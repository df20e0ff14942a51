# EmbedMask, R-50 (MSRA caffe) + FPN P3-P7, COCO 1x, as a detectron2 LazyConfig for detectron2's
# stock tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/embedmask_r50_1x.py
# The official recipe (yinghdb/EmbedMask embed_mask_R50_1x.yaml, released revision e9d6142),
# the same values as configs/embedmask/embedmask_r50_1x.py (mmdet) and embedmask_r50_1x.yaml.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.detectron2.embedmask import InsplugEmbedMask, InsplugEmbedMaskHead
from insplug.detectron2.fcos import InsplugFCOS, InsplugFCOSHead

num_classes = 80
# FCOS-official inference: cls > 0.05, top 1000 per level, score cls * ctr, NMS 0.6, 100
fcos_test = dict(score_thr=0.05, nms_pre=1000, max_per_img=100, nms_thr=0.6,
                 thresh_with_ctr=False, candidate_mode='threshold_topk', score='product')
model = L(InsplugEmbedMask)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True,
                                                 norm='FrozenBN'),
            out_features=['res3', 'res4', 'res5'], freeze_at=2),
        in_features=['res3', 'res4', 'res5'], out_channels=256,
        top_block=L(LastLevelP6P7)(in_channels=256, out_channels=256, in_feature='p5')),
    proposal_generator=L(InsplugFCOS)(
        head=L(InsplugFCOSHead)(in_channels=256, num_classes=num_classes, num_cls_convs=4,
                                num_box_convs=4, num_share_convs=0, norm='GN', norm_groups=32,
                                use_scale=True, num_levels=5, prior_prob=0.01,
                                centerness_on_reg=True, norm_reg_targets=True),
        in_features=['p3', 'p4', 'p5', 'p6', 'p7'], strides=[8, 16, 32, 64, 128],
        sizes_of_interest=[64, 128, 256, 512], num_classes=num_classes,
        center_sample_radius=1.5,
        loss_opts=dict(loss_type='giou', iou_smooth=1.0, box_quality='ctrness',
                       cls_normalizer='fg', focal_alpha=0.25, focal_gamma=2.0,
                       loss_weight_cls=1.0),
        test_opts=fcos_test, train_opts=fcos_test, clip_before_nms=False,
        yield_proposal=False),
    embed_head=L(InsplugEmbedMaskHead)(in_channels=256, embed_dim=16, num_levels=5,
                                       num_mask_convs=4, norm_groups=32, per_dim_margin=True,
                                       prior_margin=2.0, margin_reduce_factor=32.0,
                                       embed_reduce_factor=1.0),
    mask_scale_factor=2, box_padding=-1.0, sample_in_mask=True, loss_mask_weight=0.5,
    mask_threshold=0.53, test_box_pad=2,
    pixel_mean=[102.9801, 115.9465, 122.7717],  # BGR input (maskrcnn-benchmark)
    pixel_std=[1.0, 1.0, 1.0],
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'BGR'
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(800,), max_size=1333, sample_style='choice'),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=800,
                                                                max_size=1333)]

# maskrcnn-benchmark make_optimizer: biases (GN ones too) lr x2 and no weight decay; GN weights
# keep the weight decay
optimizer = get_config('common/optim.py').SGD
optimizer.lr = 0.01
optimizer.momentum = 0.9
optimizer.weight_decay = 1e-4
optimizer.params.weight_decay_norm = 1e-4
optimizer.params.bias_lr_factor = 2.0
optimizer.params.base_lr = '${..lr}'  # get_default_optimizer_params needs it for the factor
optimizer.params.weight_decay_bias = 0.0

train = get_config('common/train.py').train
train.max_iter = 90000
train.checkpointer.period = 10000
train.eval_period = 10000
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[60000, 80000, 90000]),
    warmup_length=500 / 90000,
    warmup_method='constant',
    warmup_factor=1.0 / 3,
)
