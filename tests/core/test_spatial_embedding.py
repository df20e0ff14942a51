"""SpatialEmbeddings loss and inference: brute-force reference and perfect synthetic embeddings."""
import pytest
import torch

from insplug.core.bottomup.spatial_embedding import (OFFICIAL_SPACING, coordinate_grid,
                                                     spatial_embedding_inference,
                                                     spatial_embedding_loss)
from insplug.core.losses.lovasz import lovasz_hinge_flat
from insplug.core.postprocess.clustering import GreedySeedClustering


def _reference_loss(offsets, sigma, seeds, masks, labels, img, spacing, fg_weight,
                    w_inst, w_var, w_seed):
    """The official loop (one image, then one instance at a time), written independently."""
    batch, num_classes, h, w = seeds.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=offsets.dtype),
                            torch.arange(w, dtype=offsets.dtype), indexing='ij')
    coords = torch.stack([xs, ys]) * spacing
    total = 0.0
    for b in range(batch):
        emb = torch.tanh(offsets[b]) + coords
        seed = torch.sigmoid(seeds[b])
        weight = torch.ones_like(seed)
        target = torch.zeros_like(seed)
        inst_loss = var_loss = 0.0
        ids = [m for m in range(masks.shape[0]) if img[m] == b and masks[m].any()]
        for m in ids:
            mask = masks[m]
            center = coords[:, mask].mean(1)
            s_pix = sigma[b][:, mask]
            s = s_pix.mean(1)
            var_loss = var_loss + (s_pix - s[:, None].detach()).pow(2).mean()
            prob = torch.exp(-((emb - center[:, None, None]).pow(2)
                               * torch.exp(10 * s)[:, None, None]).sum(0))
            inst_loss = inst_loss + lovasz_hinge_flat((2 * prob - 1).flatten(), mask.flatten())
            target[labels[m]][mask] = prob.detach()[mask]
            weight[labels[m]][mask] = fg_weight
        seed_loss = (weight * (seed - target).pow(2)).sum() / (h * w)
        if ids:
            inst_loss, var_loss = inst_loss / len(ids), var_loss / len(ids)
        total = total + w_inst * inst_loss + w_var * var_loss + w_seed * seed_loss
    return total / batch


@pytest.mark.parametrize('n_sigma', [1, 2])
def test_loss_matches_official_loop_reference(n_sigma):
    gen = torch.Generator().manual_seed(n_sigma)
    batch, classes, h, w = 3, 3, 12, 10
    offsets = torch.randn(batch, 2, h, w, generator=gen, dtype=torch.float64) * 0.01
    sigma = torch.rand(batch, n_sigma, h, w, generator=gen, dtype=torch.float64) * 0.5
    seeds = torch.randn(batch, classes, h, w, generator=gen, dtype=torch.float64)
    masks = torch.zeros(5, h, w, dtype=torch.bool)
    masks[0, 1:5, 1:6] = masks[1, 6:11, 2:9] = masks[2, 0:4, 6:10] = True
    masks[3, 2:9, 1:8] = True
    img = torch.tensor([0, 0, 0, 2, 1])  # image 1: only an empty mask -> no instance
    labels = torch.tensor([0, 2, 2, 1, 0])
    spacing = 0.05  # large enough for non-trivial probabilities on a tiny grid
    params = [p.requires_grad_() for p in (offsets, sigma, seeds)]
    out = spatial_embedding_loss(offsets, sigma, seeds, masks, labels, img, spacing,
                                 foreground_weight=10, instance_weight=1, sigma_weight=10,
                                 seed_weight=1)
    ref = _reference_loss(offsets, sigma, seeds, masks, labels, img, spacing, 10, 1, 10, 1)
    total = sum(out.values())
    assert total.item() == pytest.approx(ref.item(), rel=1e-9)
    grads = torch.autograd.grad(total, params)
    ref_grads = torch.autograd.grad(ref, params)
    for g, rg in zip(grads, ref_grads):
        assert torch.allclose(g, rg, atol=1e-10)


def _perfect_prediction(instance_map, classes_of, num_classes, spacing, sigma_value):
    """Offsets that put every pixel of instance i exactly on its centre (and background pixels
    far away), a constant sigma and saturated seeds in the instance's class map."""
    h, w = instance_map.shape
    coords = coordinate_grid(h, w, spacing, dtype=torch.float64)
    offsets = torch.full((2, h, w), -2.0, dtype=torch.float64)  # tanh(-2) = -0.96
    seeds = torch.full((num_classes, h, w), -12.0, dtype=torch.float64)
    masks, labels = [], []
    for i, cls in classes_of.items():
        mask = instance_map == i
        center = coords[:, mask].mean(1)
        offsets[:, mask] = torch.atanh(center[:, None] - coords[:, mask])
        seeds[cls][mask] = 12.0
        masks.append(mask)
        labels.append(cls)
    sigma = torch.full((1, h, w), sigma_value, dtype=torch.float64)
    return offsets, sigma, seeds, torch.stack(masks), torch.tensor(labels)


def _synthetic_instances():
    """Touching and interleaved instances: rectangles side by side, an L-shape, a square with
    an instance cut out of it off-centre (their centroids are 4.4 px apart)."""
    inst = torch.zeros(40, 48, dtype=torch.long)
    inst[2:12, 2:20] = 1
    inst[2:12, 20:30] = 2  # touches instance 1
    inst[15:35, 5:9] = 3
    inst[31:35, 5:25] = 3  # L-shape
    inst[14:30, 30:46] = 4
    inst[16:22, 32:40] = 5  # inside instance 4
    return inst, {1: 0, 2: 1, 3: 2, 4: 0, 5: 1}


def test_perfect_embeddings_cluster_back_into_exact_instances():
    inst, classes_of = _synthetic_instances()
    offsets, sigma, seeds, masks, labels = _perfect_prediction(inst, classes_of, 3,
                                                               OFFICIAL_SPACING, 1.5)
    pred_masks, pred_labels, scores = spatial_embedding_inference(
        offsets, sigma, seeds, GreedySeedClustering(min_pixels=10))
    assert pred_masks.shape[0] == masks.shape[0]
    # match each prediction to the identical ground-truth mask
    same = (pred_masks[:, None] == masks[None]).flatten(2).all(2)  # N_pred, N_gt
    assert same.sum(1).eq(1).all() and same.sum(0).eq(1).all()
    gt_index = same.float().argmax(1)
    assert torch.equal(pred_labels, labels[gt_index])
    assert torch.all(scores > 0.99)


def test_perfect_embeddings_give_near_zero_loss_and_worse_ones_more():
    inst, classes_of = _synthetic_instances()
    offsets, sigma, seeds, masks, labels = _perfect_prediction(inst, classes_of, 3,
                                                               OFFICIAL_SPACING, 1.5)
    img = torch.zeros(len(labels), dtype=torch.long)
    perfect = spatial_embedding_loss(offsets[None], sigma[None], seeds[None], masks, labels, img)
    assert perfect['loss_instance'].item() < 1e-6
    assert perfect['loss_sigma'].item() == 0.0
    assert perfect['loss_seed'].item() < 1e-3
    noisy = spatial_embedding_loss(offsets[None] * 0, sigma[None], seeds[None], masks, labels,
                                   img)
    assert noisy['loss_instance'].item() > 0.1


def test_image_without_instances_only_pushes_seeds_down():
    seeds = torch.zeros(1, 2, 4, 4, requires_grad=True)
    out = spatial_embedding_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), seeds,
                                 torch.zeros(0, 4, 4, dtype=torch.bool),
                                 torch.zeros(0, dtype=torch.long),
                                 torch.zeros(0, dtype=torch.long))
    # every seed is sigmoid(0) = 0.5 with target 0: sum over 2 maps of 16 * 0.25 / 16 = 0.5
    assert out['loss_seed'].item() == pytest.approx(0.5)
    assert out['loss_instance'].item() == 0.0
    out['loss_seed'].backward()
    assert (seeds.grad > 0).all()


def test_label_out_of_range_names_num_classes():
    with pytest.raises(ValueError, match='num_classes'):
        spatial_embedding_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4),
                               torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool),
                               torch.tensor([2]), torch.tensor([0]))


def test_no_foreground_gives_no_instances():
    pred = spatial_embedding_inference(torch.zeros(2, 16, 16), torch.zeros(1, 16, 16),
                                       torch.full((3, 16, 16), -5.0))
    assert pred[0].shape == (0, 16, 16) and pred[1].numel() == 0 and pred[2].numel() == 0


def test_minimising_the_loss_over_free_maps_recovers_the_instances():
    """Gradient descent on the loss alone (free offset/sigma/seed maps, no network) must lead to
    maps that cluster back into the ground truth: each instance matched at IoU > 0.9."""
    torch.manual_seed(0)
    inst = torch.zeros(48, 48, dtype=torch.long)
    inst[4:20, 4:24] = 1
    inst[24:44, 8:16] = 2
    inst[26:42, 22:44] = 3
    inst[6:12, 30:36] = 4
    masks = torch.stack([inst == i for i in range(1, 5)])
    labels = torch.tensor([0, 1, 2, 0])
    img = torch.zeros(4, dtype=torch.long)
    offsets = torch.zeros(1, 2, 48, 48, requires_grad=True)
    sigma = torch.ones(1, 1, 48, 48, requires_grad=True)
    seeds = torch.zeros(1, 3, 48, 48, requires_grad=True)
    opt = torch.optim.Adam([offsets, sigma, seeds], lr=0.01)
    first = None
    for _ in range(150):
        loss = sum(spatial_embedding_loss(offsets, sigma, seeds, masks, labels, img).values())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    pred, pred_labels, _ = spatial_embedding_inference(
        offsets[0].detach(), sigma[0].detach(), seeds[0].detach(),
        GreedySeedClustering(seed_threshold=0.5, min_pixels=8))
    inter = (pred[:, None] & masks[None]).flatten(2).sum(2).float()
    union = (pred[:, None] | masks[None]).flatten(2).sum(2).float()
    best = (inter / union).max(0)
    assert best.values.min() > 0.9
    assert torch.equal(pred_labels[best.indices], labels)
