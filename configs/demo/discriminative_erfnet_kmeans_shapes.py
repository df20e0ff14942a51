# Discriminative-loss demo with the instance-count density branch and k-means clustering into
# the predicted number of instances.
_base_ = './discriminative_erfnet_shapes.py'

model = dict(
    head=dict(
        predict_count=True,
        count_weight=0.1,
        test_cfg=dict(
            _delete_=True,
            clustering=dict(type='KMeansClustering', num_iter=30, num_restarts=10,
                            min_pixels=8),
            min_pixels=8,
            max_per_img=100)))
