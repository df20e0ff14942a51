"""Bottom-up detector in mmdet: registry, loss with an empty image, InstanceData output, configs."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from insplug.registry import MODELS, TASK_UTILS

SE_CFG = 'configs/demo/spatialembeddings_erfnet_shapes.py'
DISC_CFG = 'configs/demo/discriminative_erfnet_shapes.py'
KMEANS_CFG = 'configs/demo/discriminative_erfnet_kmeans_shapes.py'


def _sample(masks, labels, img_shape=(60, 64), ori_shape=(120, 128)):
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, ori_shape=ori_shape,
                                         batch_input_shape=(64, 64), pad_shape=(64, 64),
                                         scale_factor=(0.5, 0.5)))
    gt = InstanceData()
    gt.masks = BitmapMasks(masks.numpy(), *img_shape)
    gt.labels = torch.as_tensor(labels, dtype=torch.long)
    gt.bboxes = torch.zeros(len(labels), 4)
    sample.gt_instances = gt
    return sample


def _batch():
    masks = torch.zeros(2, 60, 64, dtype=torch.bool)
    masks[0, 5:20, 5:25] = True
    masks[1, 30:50, 30:60] = True
    return torch.randn(2, 3, 64, 64), [
        _sample(masks, [1, 4]), _sample(torch.zeros(0, 60, 64, dtype=torch.bool), [])]


def _build(path, **head):
    cfg = Config.fromfile(path)
    for key, value in head.items():  # replace, not merge
        cfg.model.head[key] = value
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model)


def test_names_are_registered_in_insplug_scope_only():
    from mmdet.registry import MODELS as MMDET_MODELS
    for name in ('ERFNet', 'SpatialEmbeddingHead', 'DiscriminativeHead', 'BottomUpSegmentor'):
        assert MODELS.get(name) is not None and MMDET_MODELS.get(name) is None
    for name in ('GreedySeedClustering', 'MeanShiftClustering', 'KMeansClustering'):
        assert TASK_UTILS.get(name) is not None


@pytest.mark.parametrize('path,keys', [
    (SE_CFG, {'loss_instance', 'loss_sigma', 'loss_seed'}),
    (DISC_CFG, {'loss_var', 'loss_dist', 'loss_reg', 'loss_semantic'}),
    (KMEANS_CFG, {'loss_var', 'loss_dist', 'loss_reg', 'loss_semantic', 'loss_count'}),
])
def test_loss_and_predict_with_an_image_without_instances(path, keys):
    torch.manual_seed(0)
    model = _build(path)
    inputs, samples = _batch()
    losses = model.loss(inputs, samples)
    assert set(losses) == keys
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        results = model.predict(inputs, samples, rescale=True)
    for res in results:
        pred = res.pred_instances
        n = len(pred)
        assert pred.masks.shape == (n, 120, 128) and pred.masks.dtype == torch.bool
        assert pred.labels.shape == (n,) and pred.scores.shape == (n,)
        assert pred.bboxes.shape == (n, 4)
        if n:
            assert pred.labels.min() >= 0 and pred.labels.max() < 5


def test_predictions_are_packed_from_clusters_correctly():
    """Forces known clusters through the SpatialEmbeddings head: masks cropped to img_shape,
    resized to ori_shape, sorted by score, boxes tight around the masks."""
    from insplug.mmdet.bottomup.heads import instances_from_clusters
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 0:10, 0:10] = True
    masks[1, 20:30, 40:64] = True   # partly in the padding (img width 60)
    masks[2, 61:64, 0:5] = True     # only in the padding: dropped
    res = instances_from_clusters(masks, torch.tensor([0, 3, 1]), torch.tensor([0.2, 0.9, 0.5]),
                                  dict(img_shape=(60, 60), ori_shape=(120, 120)), True, 100)
    assert res.labels.tolist() == [3, 0]
    assert res.scores.tolist() == pytest.approx([0.9, 0.2])
    assert res.masks.shape == (2, 120, 120)
    assert res.bboxes.tolist() == [[80, 40, 120, 60], [0, 0, 20, 20]]


def test_wrong_num_classes_fails_with_a_clear_message():
    model = _build(SE_CFG, num_classes=2)
    inputs, samples = _batch()  # labels 1 and 4
    with pytest.raises(ValueError, match='num_classes'):
        model.loss(inputs, samples)
    disc = _build(DISC_CFG, num_classes=3)
    with pytest.raises(ValueError, match='num_classes'):
        disc.loss(inputs, samples)


def test_kmeans_without_count_branch_is_refused():
    with pytest.raises(ValueError, match='predict_count'):
        _build(KMEANS_CFG, predict_count=False)
    with pytest.raises(ValueError, match='seed'):
        _build(DISC_CFG, test_cfg=dict(clustering=dict(type='GreedySeedClustering')))


@pytest.mark.parametrize('path,num_classes', [
    ('configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py', 1),
    ('configs/spatialembeddings/spatialembeddings_r50_fpn_coco.py', 80),
    ('configs/discriminative/discriminative_erfnet_cityscapes.py', 1),
    ('configs/discriminative/discriminative_r50_fpn_kmeans_coco.py', 80),
])
def test_full_size_configs_build_with_matching_class_counts(path, num_classes):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'insplug'
    with DefaultScope.overwrite_default_scope('insplug'):
        model = MODELS.build(cfg.model)
    assert model.head.num_classes == num_classes
    classes = cfg.train_dataloader.dataset.get('metainfo', {}).get('classes')
    if classes is None:  # the dataset's own METAINFO
        from mmdet.registry import DATASETS
        dataset = cfg.train_dataloader.dataset
        dataset = dataset.get('dataset', dataset)
        classes = DATASETS.get(dataset.type).METAINFO['classes']
    assert len(classes) == num_classes


def test_object_centred_crop_follows_the_official_rule():
    """Crop corner = int(clip(mean - size/2, 0, dim - size)) of the chosen object's pixels
    (official generate_crops.py); with one object the choice is forced."""
    import numpy as np
    from mmdet.structures.bbox import HorizontalBoxes

    from insplug.registry import TRANSFORMS
    masks = np.zeros((1, 100, 200), dtype=np.uint8)
    masks[0, 60:71, 150:181] = 1  # mean (65, 165)
    results = dict(img=np.arange(100 * 200 * 3, dtype=np.float32).reshape(100, 200, 3),
                   img_shape=(100, 200),
                   gt_bboxes=HorizontalBoxes(torch.tensor([[150.0, 60.0, 181.0, 71.0]])),
                   gt_bboxes_labels=np.array([0]), gt_ignore_flags=np.array([False]),
                   gt_masks=BitmapMasks(masks, 100, 200))
    with DefaultScope.overwrite_default_scope('insplug'):
        crop = TRANSFORMS.build(dict(type='ObjectCenteredCrop', crop_size=(40, 64)))
    out = crop(results)
    top, left = int(np.clip(65 - 20, 0, 60)), int(np.clip(165 - 32, 0, 136))
    assert out['img'].shape[:2] == (40, 64)
    assert out['img'][0, 0, 0] == ((top * 200 + left) * 3)
    assert out['gt_masks'].masks.sum() == masks.sum()
    assert out['gt_bboxes'].tensor.tolist() == [[150.0 - left, 60.0 - top, 181.0 - left,
                                                 71.0 - top]]
