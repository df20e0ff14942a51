# BlendMask, R-50 (MSRA caffe) + FPN P3-P7, COCO 1x, as a detectron2 LazyConfig for detectron2's
# stock tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/blendmask_r50_1x.py
# The official recipe (aim-uofa/AdelaiDet configs/BlendMask/R_50_1x.yaml), the same values as
# configs/blendmask/blendmask_r50_1x.py (mmdet) and blendmask_r50_1x.yaml.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.detectron2.blendmask import InsplugBasisModule, InsplugBlendMask, build_top_layer
from insplug.detectron2.fcos import InsplugFCOS, InsplugFCOSHead

num_classes = 80
num_bases, attn_size = 4, 14
fcos_test = dict(score_thr=0.05, nms_pre=1000, max_per_img=100, nms_thr=0.6,
                 thresh_with_ctr=True, candidate_mode='threshold_topk', score='sqrt')
model = L(InsplugBlendMask)(
    # detectron2's MSRA R-50 (caffe: stride in the 1x1 conv), FrozenBN, stem + res2 frozen;
    # FPN on res3-res5 with P6/P7 from P5 (AdelaiDet build_fcos_resnet_fpn_backbone)
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True,
                                                 norm='FrozenBN'),
            out_features=['res3', 'res4', 'res5'], freeze_at=2),
        in_features=['res3', 'res4', 'res5'], out_channels=256,
        top_block=L(LastLevelP6P7)(in_channels=256, out_channels=256, in_feature='p5')),
    # AdelaiDet FCOS with Base-BlendMask.yaml's USE_SCALE False / THRESH_WITH_CTR True
    proposal_generator=L(InsplugFCOS)(
        head=L(InsplugFCOSHead)(in_channels=256, num_classes=num_classes, num_cls_convs=4,
                                num_box_convs=4, num_share_convs=0, norm='GN', norm_groups=32,
                                use_scale=False, num_levels=5, prior_prob=0.01,
                                centerness_on_reg=True, norm_reg_targets=True),
        in_features=['p3', 'p4', 'p5', 'p6', 'p7'], strides=[8, 16, 32, 64, 128],
        sizes_of_interest=[64, 128, 256, 512], num_classes=num_classes,
        center_sample_radius=1.5,
        loss_opts=dict(loss_type='giou', iou_smooth=1.0, box_quality='ctrness',
                       cls_normalizer='fg', focal_alpha=0.25, focal_gamma=2.0,
                       loss_weight_cls=1.0),
        test_opts=fcos_test, train_opts=fcos_test, clip_before_nms=False,
        yield_proposal=False),
    basis_module=L(InsplugBasisModule)(in_channels=256, num_classes=num_classes,
                                       num_bases=num_bases, convs_dim=128, num_convs=3,
                                       num_levels=3, norm='SyncBN', loss_on=True),
    basis_in_features=['p3', 'p4', 'p5'],
    top_layer=L(build_top_layer)(in_channels=256, num_bases=num_bases, attn_size=attn_size),
    attn_size=attn_size, bottom_resolution=56, bases_stride=4, pooler_sampling_ratio=1,
    instance_loss_weight=1.0, semantic_loss_weight=0.3, semantic_stride=8, mask_threshold=0.5,
    pixel_mean=[103.530, 116.280, 123.675],  # BGR input
    pixel_std=[1.0, 1.0, 1.0],
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'BGR'
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(640, 672, 704, 736, 768, 800), max_size=1333,
                            sample_style='choice'),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=800,
                                                                max_size=1333)]

optimizer = get_config('common/optim.py').SGD
optimizer.lr = 0.01
optimizer.momentum = 0.9
optimizer.weight_decay = 1e-4
optimizer.params.weight_decay_norm = 0.0

train = get_config('common/train.py').train
train.max_iter = 90000
train.checkpointer.period = 5000
train.eval_period = 0  # evaluation after training only (detectron2 TEST.EVAL_PERIOD 0)
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[60000, 80000, 90000]),
    warmup_length=1000 / 90000,
    warmup_method='linear',
    warmup_factor=0.001,
)
