"""``select_instances`` (clusters -> final instances of one image) and
``discriminative_head_losses`` (the discriminative model's loss sum), the bottom-up core functions
both adapters (mmdet heads, detectron2 meta-architectures) call. Hand-worked cases."""
import torch

from insplug.core.bottomup.discriminative import (count_density_loss,
                                                  discriminative_head_losses, semantic_loss)
from insplug.core.bottomup.instances import select_instances
from insplug.core.losses.discriminative import discriminative_loss


def test_select_instances_crops_ranks_resizes_and_boxes():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, 1:3, 1:4] = True        # inside the 6 x 6 image
    masks[1, 6:8, 6:8] = True        # only in the padding: empty after the crop
    masks[2, 0:6, 4:6] = True
    labels = torch.tensor([2, 1, 0])
    scores = torch.tensor([0.2, 0.9, 0.5])
    m, lab, sc, boxes = select_instances(masks, labels, scores, (6, 6), None, max_per_img=10)
    # sorted by score (0.9, 0.5, 0.2); the 0.9 mask is empty in the image and dropped
    assert lab.tolist() == [0, 2] and torch.equal(sc, torch.tensor([0.5, 0.2]))
    assert m.shape == (2, 6, 6)
    assert boxes.tolist() == [[4.0, 0.0, 6.0, 6.0], [1.0, 1.0, 4.0, 3.0]]
    # the top-k applies before the empty masks are dropped (as the mmdet head did)
    _, lab, _, _ = select_instances(masks, labels, scores, (6, 6), None, max_per_img=1)
    assert lab.tolist() == []
    # resize x2: each pixel becomes 2 x 2, the boxes scale with it
    m, _, _, boxes = select_instances(masks, labels, scores, (6, 6), (12, 12), max_per_img=10)
    assert m.shape == (2, 12, 12)
    assert boxes.tolist() == [[8.0, 0.0, 12.0, 12.0], [2.0, 2.0, 8.0, 6.0]]
    assert int(m[1].sum()) == 4 * 6


def test_discriminative_head_losses_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 6, 6)
    sem = torch.randn(2, 3, 6, 6)
    density = torch.rand(2, 6, 6)
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, :3, :3] = masks[1, 3:, 3:] = masks[2, 1:4, 2:5] = True
    labels, img = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])
    cfg = dict(delta_v=0.4, delta_d=1.2, gamma=0.01)
    out = discriminative_head_losses(emb, sem, density, masks, labels, img, cfg, 0.5,
                                     [1.0, 2.0, 3.0], 0.3)
    ref = discriminative_loss(emb, masks, img, **cfg)
    assert set(out) == set(ref) | {'loss_semantic', 'loss_count'}
    for key in ref:
        assert torch.equal(out[key], ref[key])
    assert torch.allclose(out['loss_semantic'],
                          0.5 * semantic_loss(sem, masks, labels, img, [1.0, 2.0, 3.0]))
    assert torch.allclose(out['loss_count'],
                          0.3 * count_density_loss(density.flatten(1), masks.flatten(1), img))
    assert 'loss_count' not in discriminative_head_losses(emb, sem, None, masks, labels, img)
