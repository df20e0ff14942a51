"""mmdet adapters: BlendMask heads, ProtoMaskHead, ProtoNetEncoder and the registered NMS family
(one forward/backward on a hand-made batch that includes an image without instances)."""
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')


@pytest.fixture(scope='module')
def registry():
    init_default_scope('insplug')
    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS, TASK_UTILS
    return MODELS, TASK_UTILS


def batch(with_empty=True, size=128):
    samples = []
    for i in range(2):
        meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                    batch_input_shape=(size, size), scale_factor=(1.0, 1.0))
        s = DetDataSample(metainfo=meta)
        n = 0 if (with_empty and i == 1) else 2
        boxes = torch.tensor([[8.0, 10.0, 60.0, 70.0], [64.0, 40.0, 120.0, 100.0]])[:n]
        masks = torch.zeros(n, size, size, dtype=torch.uint8)
        for j, b in enumerate(boxes.long()):
            masks[j, b[1]:b[3], b[0]:b[2]] = 1
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([0, 3])[:n],
                                      masks=BitmapMasks(masks.numpy(), size, size))
        samples.append(s)
    return torch.rand(2, 3, size, size) * 255, samples


def build(registry, config, **model_overrides):
    MODELS, _ = registry
    cfg = Config.fromfile(osp.join(CONFIGS, 'demo', config))
    if model_overrides:
        cfg.merge_from_dict(dict(model=model_overrides))
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def run_loss_and_predict(model):
    torch.manual_seed(0)
    inputs, samples = batch()
    model.train()
    data = model.data_preprocessor(dict(inputs=list(inputs.to(torch.uint8)),
                                        data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=list(inputs.to(torch.uint8)),
                                            data_samples=samples), False)
        out = model(**data, mode='predict')
    return losses, out


def test_names_are_new_to_mmdet(registry):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
    for name in ('BlendMask', 'BlendMaskFCOSHead', 'BlendMaskHead', 'ProtoNetEncoder',
                 'ProtoMaskHead', 'YOLACTBoxHead'):
        assert registry[0].get(name) is not None
        assert MMDET_MODELS.get(name) is None or MMDET_MODELS.get(name) is registry[0].get(name)
    for name in ('BoxNMS', 'FastNMS', 'MatrixNMS', 'MaskIoUNMS'):
        assert registry[1].get(name) is not None
        assert MMDET_TASK_UTILS.get(name) is None or \
            MMDET_TASK_UTILS.get(name) is registry[1].get(name)


def test_blendmask_losses_grads_and_predict_with_empty_image(registry):
    model = build(registry, 'blendmask_r18_shapes.py')
    losses, out = run_loss_and_predict(model)
    assert set(losses) >= {'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask',
                           'loss_basis_sem'}
    assert losses['loss_mask'] > 0 and losses['loss_basis_sem'] > 0
    head = model.mask_head
    assert head.bottom_module.proto_conv.weight.grad.abs().sum() > 0
    assert model.bbox_head.top_layer.weight.grad.abs().sum() > 0  # attentions (top layer)
    for o in out:
        p = o.pred_instances
        assert p.masks.shape[1:] == (128, 128) and len(p.masks) == len(p.scores)


def test_blendmask_box_nms_can_be_a_registered_one(registry):
    model = build(registry, 'blendmask_r18_shapes.py',
                  test_cfg=dict(score_thr=0.0, nms=dict(_delete_=True, type='FastNMS', iou_thr=0.5,
                                                  top_k=50)),
                  mask_head=dict(test_cfg=dict(mask_nms=dict(type='MatrixNMS',
                                                             kernel='linear'))))
    # the detector copies test_cfg into the heads at build time
    assert model.bbox_head.test_cfg.nms.type == 'FastNMS'
    _, out = run_loss_and_predict(model)
    assert len(out[0].pred_instances) > 0  # score_thr 0 -> candidates reach both NMS stages
    s = out[0].pred_instances.scores
    assert torch.all(s[:-1] >= s[1:])


def test_bottom_module_mismatch_is_a_clear_error(registry):
    with pytest.raises(ValueError, match='num_bases'):
        build(registry, 'blendmask_r18_shapes.py',
              mask_head=dict(bottom_module=dict(num_protos=6)))


def test_proto_mask_head_with_mask_iou_and_empty_image(registry):
    model = build(registry, 'yolact_protonet_r18_shapes.py')
    losses, out = run_loss_and_predict(model)
    assert {'loss_mask', 'loss_segm', 'loss_mask_iou'} <= set(losses)
    head = model.mask_head
    assert type(head.protonet).__name__ == 'ProtoNetEncoder'
    assert head.protonet.proto_conv.weight.grad.abs().sum() > 0
    assert next(head.mask_iou_net.parameters()).grad is not None
    assert all(len(o.pred_instances.masks) == len(o.pred_instances.scores) for o in out)


def test_yolact_box_head_ohem_ignores_negatives_of_an_image_without_instances(registry):
    """YOLACT's OHEM keeps 3 x num_pos hard negatives per image, so an image without instances
    adds nothing to loss_cls, and the release divides by the batch's positive count: the loss of
    [image with 2 shapes, empty image] equals that of the first image alone, and an empty image
    alone gives 0. mmdet's YOLACTHead keeps all of the empty image's negatives (thousands of
    anchors), which this test would catch."""
    model = build(registry, 'yolact_protonet_r18_shapes.py')
    head = model.bbox_head
    torch.manual_seed(0)
    inputs, samples = batch(with_empty=True)
    data = model.data_preprocessor(dict(inputs=list(inputs.to(torch.uint8)),
                                        data_samples=samples), True)
    with torch.no_grad():
        outs = head(model.extract_feat(data['inputs']))
    gts = [s.gt_instances for s in data['data_samples']]
    metas = [s.metainfo for s in data['data_samples']]

    def loss_cls(images):
        sub = [[level[images] for level in out] for out in outs]
        loss = head.loss_by_feat(*sub, [gts[i] for i in images],
                                 [metas[i] for i in images])['loss_cls']
        return loss, head.get_positive_infos()

    first, infos = loss_cls([0])
    num_pos = len(infos[0])
    both, _ = loss_cls([0, 1])
    empty, _ = loss_cls([1])
    assert num_pos > 0 and first > 0
    assert torch.isclose(both, first, rtol=1e-6)
    assert empty == 0


def test_registered_nms_matches_core_and_rejects_unknown_params(registry):
    from insplug.core.postprocess.nms import fast_nms
    _, TASK_UTILS = registry
    nms = TASK_UTILS.build(dict(type='FastNMS', iou_thr=0.3, top_k=10))
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 20], 1)
    scores, labels = torch.rand(30, generator=gen), torch.randint(0, 2, (30,), generator=gen)
    a, b = nms(scores, labels, boxes=boxes), fast_nms(scores, labels, boxes, iou_thr=0.3,
                                                       top_k=10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(TypeError, match='iou_threshold'):
        TASK_UTILS.build(dict(type='MatrixNMS', iou_threshold=0.5))
