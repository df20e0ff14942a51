# Recurrent pixel embedding (Kong and Fowlkes, CVPR 2018) on the bundled shapes set, CPU-sized:
# the slim ERFNet of the SpatialEmbeddings demo, 8-d hypersphere embeddings and a semantic
# branch. Losses as in the release's tutorial with grouping loops (demo1 step003/step004):
# 5 recurrent mean-shift loops at bandwidth 0.1, calibrated cosine losses on the embedding
# (margin 0.1) and after every loop (margin 0.07), 20% of the pixels sampled per loss; here on
# 1/64 of the pixels per image (256 at 128 px, drawn at random; the VOC release trains on
# its stride-4 map). Inference: 16
# loops at bandwidth 0.2 (the release's VOC test script) over the semantic foreground, then the
# converged points merged within 1.0.
_base_ = './spatialembeddings_erfnet_shapes.py'

model = dict(
    type='RecurrentPixelEmbeddingSegmentor',
    head=dict(
        _delete_=True,
        type='RecurrentPixelEmbeddingHead',
        num_classes=5,
        in_channels=16,
        embed_dims=8,
        num_iters=5,
        bandwidth=0.1,
        margin=0.1,
        loop_margin=0.07,
        sample_ratio=0.2,
        pull_weight=1.0,
        push_weight=1.0,
        loss_stride=8,
        semantic_weight=1.0,
        test_cfg=dict(
            clustering=dict(type='RecurrentMeanShiftClustering', bandwidth=0.2, num_iters=16,
                            merge_radius=1.0, min_pixels=8, max_points=512),
            min_pixels=8,
            max_per_img=100)))
optim_wrapper = dict(optimizer=dict(lr=3e-3))
