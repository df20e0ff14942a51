# Recurrent pixel embedding (Kong and Fowlkes, CVPR 2018) on Pascal VOC 2012 instance
# segmentation (SBD-augmented train, VOC 2012 val), converted to COCO format (20 classes).
# Loss as the release's VOC training (demo4_InstSegTraining_VOC2012/main001_trainScript.m):
# 64-d hypersphere embeddings, calibrated cosine pull (weight 1) and push (margin 0.5, weight 5)
# on 35% (at most 4000) of 1/16 of the pixels (the release: of its stride-4 map), no grouping loop in training.
# Inference: 16 recurrent mean-shift loops at bandwidth 0.2 (the release's VOC test script),
# merged within 1.0, over the semantic foreground. Trunk: ResNet-50 + FPN P2 (stride 4) instead
# of the release's MatConvNet ResNet; the semantic branch (classes for COCO-style AP) is
# insplug's (the release trains embeddings only; the paper takes classes from a semantic
# segmentation model). Optimiser as the other insplug bottom-up configs (the release's SGD at
# lr 1e-5 is tied to MatConvNet's summed losses).
_base_ = '../spatialembeddings/spatialembeddings_r50_fpn_coco.py'
classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
           'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep',
           'sofa', 'train', 'tvmonitor')
data_root = 'data/voc2012_instance/'

model = dict(
    type='RecurrentPixelEmbeddingSegmentor',
    head=dict(
        _delete_=True,
        type='RecurrentPixelEmbeddingHead',
        num_classes=20,
        in_channels=256,
        embed_dims=64,
        num_iters=0,
        bandwidth=0.1,
        margin=0.5,
        sample_ratio=0.35,
        max_samples=4000,
        pull_weight=1.0,
        push_weight=5.0,
        loss_stride=4,
        semantic_weight=1.0,
        in_stride=4,
        in_index=(0, 0),
        test_cfg=dict(
            clustering=dict(type='RecurrentMeanShiftClustering', bandwidth=0.2, num_iters=16,
                            merge_radius=1.0, min_pixels=64, max_points=2048),
            min_pixels=64,
            max_per_img=100)))

# Pascal VOC 2012 instance segmentation in COCO format: SBD-augmented train (10582 images) and
# VOC 2012 val (1449) under data/voc2012_instance/ (annotations/voc_2012_{train_aug,val}_instance
# .json, JPEGImages/); COCO metric (the papers' mAP^r at IoU 0.5 is close to segm AP50).
_data = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(dataset=dict(ann_file='annotations/voc_2012_train_aug_instance.json',
                                     data_prefix=dict(img='JPEGImages/'), **_data))
val_dataloader = dict(dataset=dict(ann_file='annotations/voc_2012_val_instance.json',
                                   data_prefix=dict(img='JPEGImages/'), **_data))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/voc_2012_val_instance.json')
test_evaluator = val_evaluator
