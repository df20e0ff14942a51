"""Discriminative-loss inference and auxiliary targets on synthetic maps with known ground truth."""
import pytest
import torch

from insplug.core.bottomup.discriminative import (count_density_loss, discriminative_inference,
                                                  predicted_count, semantic_loss,
                                                  semantic_targets)
from insplug.core.losses.discriminative import discriminative_loss
from insplug.core.postprocess.clustering import KMeansClustering, MeanShiftClustering


def _scene():
    """Five instances of three classes on a 32x40 map (touching and nested ones included)."""
    inst = torch.zeros(32, 40, dtype=torch.long)
    inst[2:10, 2:15] = 1
    inst[2:10, 15:22] = 2
    inst[14:30, 3:8] = 3
    inst[12:30, 20:38] = 4
    inst[16:22, 24:30] = 5
    masks = torch.stack([inst == i for i in range(1, 6)])
    labels = torch.tensor([0, 2, 1, 0, 2])
    return masks, labels


def _perfect_maps(masks, labels, num_classes=3, dims=4, noise=0.0):
    """Embeddings constant per instance, centres 4 apart (beyond the loss' 2 * delta_d = 3),
    optional noise within delta_v; semantic logits saturated on the right class; a count
    density of 1 / area on every instance."""
    gen = torch.Generator().manual_seed(0)
    h, w = masks.shape[1:]
    emb = torch.zeros(dims, h, w)
    centres = torch.zeros(5, dims)
    centres[:, 0] = 4.0 * torch.arange(5)
    sem = torch.full((num_classes + 1, h, w), -10.0)
    sem[0] = 10.0
    density = torch.zeros(h, w)
    for m, (mask, label) in enumerate(zip(masks, labels)):
        emb[:, mask] = centres[m][:, None]
        sem[:, mask] = -10.0
        sem[label + 1][mask] = 10.0
        density[mask] = 1.0 / mask.sum()
    emb = emb + noise * torch.randn(emb.shape, generator=gen).clamp(-1, 1)
    return emb, sem, density


def _assert_exact(pred_masks, pred_labels, masks, labels):
    assert pred_masks.shape[0] == masks.shape[0]
    same = (pred_masks[:, None] == masks[None]).flatten(2).all(2)
    assert same.sum(1).eq(1).all() and same.sum(0).eq(1).all()
    assert torch.equal(pred_labels, labels[same.float().argmax(1)])


def test_perfect_embeddings_give_zero_pull_and_push():
    masks, labels = _scene()
    emb, _, _ = _perfect_maps(masks, labels, noise=0.1)  # |noise| <= 0.1 per dim < delta_v
    out = discriminative_loss(emb[None], masks, torch.zeros(5, dtype=torch.long))
    assert out['loss_var'].item() == 0.0 and out['loss_dist'].item() == 0.0


@pytest.mark.parametrize('noise', [0.0, 0.1])
def test_mean_shift_recovers_exact_instances(noise):
    masks, labels = _scene()
    emb, sem, _ = _perfect_maps(masks, labels, noise=noise)
    pred_masks, pred_labels, scores = discriminative_inference(
        emb, sem, MeanShiftClustering(bandwidth=0.5))
    _assert_exact(pred_masks, pred_labels, masks, labels)
    assert torch.all(scores > 0.99)


def test_kmeans_with_predicted_count_recovers_exact_instances():
    masks, labels = _scene()
    emb, sem, density = _perfect_maps(masks, labels, noise=0.1)
    assert predicted_count(density.flatten(), masks.flatten(1).any(0)) == 5
    pred_masks, pred_labels, _ = discriminative_inference(emb, sem, KMeansClustering(),
                                                          density=density)
    _assert_exact(pred_masks, pred_labels, masks, labels)


def test_semantic_targets_and_loss():
    masks, labels = _scene()
    target = semantic_targets(masks.flatten(1), labels, torch.zeros(5, dtype=torch.long), 2)
    expected = torch.zeros(32 * 40, dtype=torch.long)
    for mask, label in zip(masks.flatten(1), labels):
        expected[mask] = label + 1
    assert torch.equal(target[0], expected) and not target[1].any()
    _, sem, _ = _perfect_maps(masks, labels)
    loss = semantic_loss(sem[None], masks, labels, torch.zeros(5, dtype=torch.long))
    assert loss.item() < 1e-6
    with pytest.raises(ValueError, match='num_classes'):
        semantic_loss(sem[None, :3], masks, labels, torch.zeros(5, dtype=torch.long))


def test_count_density_loss_hand_values():
    """Image 0: instance A (2 px, density 0.5 each: sum 1, error 0), instance B (3 px: sum 1.5,
    error 0.5), background (0.5 + 0: error 0.5) -> (0 + 0.5 + 0.5) / 2 instances = 0.5.
    Image 1, no instance: background sum 0.2 -> 0.2. Mean over images: 0.35."""
    density = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0],
                            [0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]])
    masks = torch.tensor([[1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    loss = count_density_loss(density, masks, torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(0.35)
