# Discriminative loss (De Brabandere et al., 2017) on Cityscapes: delta_v 0.5, delta_d 1.5,
# alpha = beta = 1, gamma 0.001, 8-d embeddings; a semantic branch (cross entropy, K + 1
# classes) gives the foreground and the class of every cluster (majority vote); mean-shift with
# bandwidth delta_v clusters the foreground embeddings. The paper's Cityscapes model is a
# ResNet-38 at 768x384; here the branched ERFNet of SpatialEmbeddings (one decoder for the
# embeddings, one for the semantic branch), with the same optimiser and schedule as
# configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py.
_base_ = '../spatialembeddings/spatialembeddings_erfnet_cityscapes.py'
delta_v = 0.5
delta_d = 1.5

model = dict(
    head=dict(
        _delete_=True,
        type='DiscriminativeHead',
        num_classes=8,
        in_channels=16,
        embed_dims=8,
        delta_v=delta_v,
        delta_d=delta_d,
        alpha=1.0,
        beta=1.0,
        gamma=0.001,
        semantic_weight=1.0,
        in_stride=2,
        in_index=(0, 1),
        test_cfg=dict(
            clustering=dict(type='MeanShiftClustering', bandwidth=delta_v,
                            assign_radius=delta_d, min_pixels=128),
            min_pixels=128,
            max_per_img=100)))
