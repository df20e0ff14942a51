# Discriminative loss on COCO with a ResNet-50 + FPN trunk (P2, stride 4), an instance-count
# density branch and k-means clustering into the predicted number of instances.
_base_ = '../spatialembeddings/spatialembeddings_r50_fpn_coco.py'
delta_v = 0.5
delta_d = 1.5

model = dict(
    head=dict(
        _delete_=True,
        type='DiscriminativeHead',
        num_classes=80,
        in_channels=256,
        embed_dims=8,
        delta_v=delta_v,
        delta_d=delta_d,
        semantic_weight=1.0,
        predict_count=True,
        count_weight=0.1,
        in_stride=4,
        in_index=(0, 0),
        test_cfg=dict(
            clustering=dict(type='KMeansClustering', num_iter=30, num_restarts=10,
                            min_pixels=64),
            min_pixels=64,
            max_per_img=100)))
