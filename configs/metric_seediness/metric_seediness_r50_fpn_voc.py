# Semantic instance segmentation via deep metric learning (Fathi et al., 2017) on Pascal VOC
# 2012 instance segmentation (SBD-augmented train, VOC 2012 val) in COCO format (20 classes).
# The paper's settings: 64-d embeddings, similarity 2 / (1 + exp(||e_p - e_q||^2)), K = 10
# sampled pixels per object, seediness for mask-growth thresholds 0.25 / 0.5 / 0.75 with IoU
# 0.5 targets, lambda 0.2 (the paper ramps it up; constant here), diversity exponent 0.3.
# No code was released. Trunk: ResNet-50 + FPN P2 (stride 4) instead of the paper's DeepLab v2
# ResNet-101; losses on 1/16 of the pixels.
# Data, trunk and schedule: the recurrent pixel embedding VOC config.
_base_ = '../recurrent_embedding/recurrent_embedding_r50_fpn_voc.py'

model = dict(
    type='MetricSeedinessSegmentor',
    head=dict(
        _delete_=True,
        type='MetricSeedinessHead',
        num_classes=20,
        in_channels=256,
        embed_dims=64,
        thresholds=(0.25, 0.5, 0.75),
        points_per_instance=10,
        iou_threshold=0.5,
        embed_weight=1.0,
        seediness_weight=0.2,
        loss_stride=4,
        in_stride=4,
        in_index=(0, 0),
        test_cfg=dict(max_seeds=100, alpha=0.3, min_seediness=0.0, min_pixels=64,
                      max_per_img=100)))
