"""ZSI mmdet heads: hand-worked unseen-class scoring with fixed embeddings, the release's
unseen-box quirk, the GZSI label offset, and the shipped demo embeddings."""
import torch
from mmengine.config import ConfigDict

import insplug.mmdet  # noqa: F401  (registers)
from insplug.core.zsi.vectors import shapes_demo_vectors
from insplug.registry import MODELS


def test_shipped_demo_vectors_equal_their_definition():
    import os.path as osp

    import insplug.core.zsi as zsi
    path = osp.join(osp.dirname(zsi.__file__), 'embeddings', 'shapes_demo.pt')
    assert torch.equal(torch.load(path, weights_only=True), shapes_demo_vectors())


def _head(tmp_path, mode):
    # D = 2; background, seen a, seen b, unseen u (unit vectors)
    vec = torch.tensor([[0., 1., 0., 0.6], [0., 0., 1., 0.8]])
    vec[:, 0] = torch.tensor([-1., -1.]) / 2 ** .5
    path = str(tmp_path / 'v.pt')
    torch.save(vec, path)
    head = MODELS.build(dict(type='ZSISemanticBBoxHead', class_vectors=path, num_classes=2,
                             in_channels=1, roi_feat_size=1, fc_out_channels=4, mode=mode,
                             reg_class_agnostic=False))
    return head.eval(), vec


def test_unseen_scores_and_box_by_hand(tmp_path):
    head, vec = _head(tmp_path, 'zsi')
    # one RoI, logits (bg, a, b) = (0, ln 3, 0) -> p = (0.2, 0.6, 0.2)
    cls_score = torch.tensor([[torch.tensor(3.).log(), 0., 0.]])
    roi = torch.tensor([[0., 10., 10., 30., 30.]])
    bbox_pred = torch.zeros(1, 8)
    bbox_pred[0, 0] = 0.5  # seen class a's dx: the release gives it to unseen class 0 too
    cfg = ConfigDict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)
    res = head._predict_by_feat_single(roi, cls_score, bbox_pred, dict(img_shape=(64, 64)),
                                       rescale=False, rcnn_test_cfg=cfg)
    p = torch.tensor([0.2, 0.6, 0.2])
    word = p @ vec[:, :3].t()  # (D,) = 0.2 * bg + 0.6 * a + 0.2 * b
    expected = float(word @ vec[:, 3])  # unseen u: (0.6, 0.8)
    assert torch.allclose(word, torch.tensor([0.6 - 0.2 / 2 ** .5, 0.2 - 0.2 / 2 ** .5]))
    assert res.labels.tolist() == [0]
    assert abs(float(res.scores[0]) - expected) < 1e-6
    # dx 0.5 with target_stds 0.1 -> shifted by 0.05 * 20 = 1 px: seen class a's regression
    assert torch.allclose(res.bboxes[0], torch.tensor([11., 10., 31., 30.]))


def test_gzsi_offsets_unseen_labels(tmp_path):
    head, _ = _head(tmp_path, 'gzsi')
    cls_score = torch.tensor([[2., 0., -1.]])
    roi = torch.tensor([[0., 10., 10., 30., 30.]])
    cfg = ConfigDict(score_thr=0.5, nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)
    res = head._predict_by_feat_single(roi, cls_score, torch.zeros(1, 8),
                                       dict(img_shape=(64, 64)), rescale=False,
                                       rcnn_test_cfg=cfg)
    # GZSI uses the release's fixed 0.05 threshold: both seen classes and unseen u (label 2)
    assert sorted(res.labels.tolist()) == [0, 1, 2]
