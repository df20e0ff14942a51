"""Discriminative loss: hand-worked cases, brute-force references of the authors' release
(davyneven/fastSceneUnderstanding, lossf/myInstanceLoss.lua) and of the paper, gradients."""
import pytest
import torch

from insplug.core.losses.discriminative import discriminative_loss

# the paper's formulas (the default is the authors' release)
PAPER = dict(variance_norm='instance', distance_norm='paper', gamma=0.001, norm_eps=0.0,
             min_pixels=1)


def _place(embeddings, masks, img, values):
    """Writes embedding ``values[m]`` (D,) on every pixel of mask m."""
    for m in range(masks.shape[0]):
        embeddings[img[m]][:, masks[m]] = torch.as_tensor(values[m],
                                                          dtype=embeddings.dtype)[:, None]


def test_two_well_separated_tight_clusters_have_zero_pull_and_push():
    """Centres 4 apart (> 2 delta_d = 3), every pixel on its centre: only the regulariser."""
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 2:] = True
    img = torch.tensor([0, 0])
    emb = torch.zeros(1, 2, 4, 4)
    _place(emb, masks, img, [[0.0, 0.0], [4.0, 0.0]])
    out = discriminative_loss(emb, masks, img, **PAPER)
    assert out['loss_var'].item() == 0.0
    assert out['loss_dist'].item() == 0.0
    # reg = gamma * mean(||mu||) = 0.001 * (0 + 4) / 2
    assert out['loss_reg'].item() == pytest.approx(0.002, abs=1e-9)


def test_single_cluster_has_zero_distance_term_and_exact_variance():
    """1-d embeddings [0, 0, 2, 2] on one instance: mean 1, every distance 1,
    variance = (1 - 0.5)^2 = 0.25; no pair, so no push."""
    masks = torch.zeros(1, 1, 5, dtype=torch.bool)
    masks[0, 0, :4] = True
    emb = torch.tensor([0.0, 0.0, 2.0, 2.0, 100.0]).view(1, 1, 1, 5)  # last pixel: background
    out = discriminative_loss(emb, masks, torch.tensor([0]), **PAPER)
    assert out['loss_dist'].item() == 0.0
    assert out['loss_var'].item() == pytest.approx(0.25, abs=1e-7)
    assert out['loss_reg'].item() == pytest.approx(0.001 * 1.0, abs=1e-9)


def test_variance_and_distance_hand_worked_two_images():
    """Image 0: instance A 1-d values [0, 3] (mean 1.5, distances 1.5 -> hinge 1.0^2 = 1.0),
    instance B [1, 1] (mean 1, var 0); image 1: no instance (contributes 0).
    var = mean over images of per-image means = ((1.0 + 0) / 2 + 0) / 2 = 0.25.
    Centres 0.5 apart: push per ordered pair (3 - 0.5)^2 = 6.25, 2 pairs / (2 * 1) -> 6.25,
    batch mean 3.125. reg = 0.001 * ((1.5 + 1) / 2 + 0) / 2 = 0.000625."""
    emb = torch.zeros(2, 1, 1, 4)
    emb[0, 0, 0] = torch.tensor([0.0, 3.0, 1.0, 1.0])
    masks = torch.zeros(2, 1, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[1, 0, 2:] = True
    out = discriminative_loss(emb, masks, torch.tensor([0, 0]), **PAPER)
    assert out['loss_var'].item() == pytest.approx(0.25, abs=1e-6)
    assert out['loss_dist'].item() == pytest.approx(3.125, abs=1e-6)
    assert out['loss_reg'].item() == pytest.approx(0.000625, abs=1e-9)


def _reference(emb, masks, img, delta_v, delta_d, gamma):
    """Direct transcription of the paper's formulas, one image and instance at a time."""
    batch = emb.shape[0]
    var_sum = dist_sum = reg_sum = 0.0
    for b in range(batch):
        ids = [m for m in range(masks.shape[0]) if img[m] == b and masks[m].any()]
        if not ids:
            continue
        means = []
        var_b = 0.0
        for m in ids:
            pixels = emb[b][:, masks[m]].t()  # N_c, D
            mu = pixels.mean(0)
            means.append(mu)
            var_b += ((pixels - mu).norm(dim=1) - delta_v).clamp(min=0).pow(2).mean()
        var_sum += var_b / len(ids)
        reg_sum += sum(mu.norm() for mu in means) / len(ids)
        if len(ids) > 1:
            push = 0.0
            for a in range(len(ids)):
                for c in range(len(ids)):
                    if a != c:
                        push += (2 * delta_d - (means[a] - means[c]).norm()).clamp(min=0) ** 2
            dist_sum += push / (len(ids) * (len(ids) - 1))
    return var_sum / batch, dist_sum / batch, gamma * reg_sum / batch


@pytest.mark.parametrize('seed', [0, 1])
def test_matches_brute_force_reference_with_uneven_instance_counts(seed):
    gen = torch.Generator().manual_seed(seed)
    batch, dims, h, w = 3, 4, 9, 11
    emb = torch.randn(batch, dims, h, w, generator=gen, dtype=torch.float64)
    masks = torch.rand(7, h, w, generator=gen) > 0.6  # overlapping random masks
    masks[5] = False  # an empty mask is ignored
    img = torch.tensor([0, 0, 0, 2, 2, 2, 0])  # image 1 has none, image 2 one empty
    out = discriminative_loss(emb, masks, img, delta_v=0.3, delta_d=1.0,
                              **dict(PAPER, gamma=0.01))
    var, dist, reg = _reference(emb, masks, img, 0.3, 1.0, 0.01)
    assert out['loss_var'].item() == pytest.approx(float(var), rel=1e-10)
    assert out['loss_dist'].item() == pytest.approx(float(dist), rel=1e-10)
    assert out['loss_reg'].item() == pytest.approx(float(reg), rel=1e-10)
    assert float(dist) > 0 and float(var) > 0


def test_gradcheck():
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, :2], masks[1, 3:], masks[2, 1:4, 2:5] = True, True, True
    img = torch.tensor([0, 0, 1])

    def total(e):
        out = discriminative_loss(e, masks, img, delta_v=0.2, delta_d=1.0, **kwargs)
        return out['loss_var'] + out['loss_dist'] + out['loss_reg']

    for kwargs in (dict(), dict(PAPER, gamma=0.1), dict(variance_norm='pixel')):
        assert torch.autograd.gradcheck(total, (emb,))


def test_no_instances_gives_zero_loss_with_gradient_path():
    emb = torch.randn(2, 4, 6, 6, requires_grad=True)
    out = discriminative_loss(emb, torch.zeros(0, 6, 6, dtype=torch.bool),
                              torch.zeros(0, dtype=torch.long))
    total = sum(out.values())
    total.backward()
    assert total.item() == 0.0 and emb.grad is not None and not emb.grad.abs().any()


def test_identical_centres_push_with_finite_gradient():
    """Two instances with the same mean: push (2 delta_d)^2 = 9, finite gradient."""
    emb = torch.zeros(1, 2, 2, 2, requires_grad=True)
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0], masks[1, 1] = True, True
    out = discriminative_loss(emb, masks, torch.tensor([0, 0]), **PAPER)
    assert out['loss_dist'].item() == pytest.approx(9.0)
    out['loss_dist'].backward()
    assert torch.isfinite(emb.grad).all()


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match='gt_masks'):
        discriminative_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 5, dtype=torch.bool),
                            torch.tensor([0]))
    with pytest.raises(ValueError, match='embeddings'):
        discriminative_loss(torch.zeros(2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool),
                            torch.tensor([0]))


def _reference_release(emb, masks, img, delta_v, delta_d):
    """The authors' release (lossf/myInstanceLoss.lua), transcribed as loops: per image, per
    instance with more than one pixel, the mean hinge^2 of ``sqrt(sum d^2 + 1e-8)``, summed
    over instances; push over unordered pairs j < k, divided by (#means - 1); no regulariser;
    (var + dist) summed over images and divided by the batch size."""
    batch = emb.shape[0]
    total_var = total_dist = 0.0
    for b in range(batch):
        means, loss_v = [], 0.0
        for m in range(masks.shape[0]):
            if img[m] != b or masks[m].sum() <= 1:
                continue
            inst = emb[b][:, masks[m]]  # D, N
            mean = inst.mean(1, keepdim=True)
            means.append(mean)
            var = ((inst - mean).pow(2).sum(0) + 1e-8).sqrt()
            loss_v = loss_v + (var - delta_v).clamp(min=0).pow(2).mean()
        loss_d = 0.0
        if len(means) > 1:
            for j in range(len(means)):
                for k in range(j + 1, len(means)):
                    d = ((means[j] - means[k]).pow(2).sum() + 1e-8).sqrt()
                    loss_d = loss_d + (-(d - 2 * delta_d)).clamp(min=0).pow(2)
            loss_d = loss_d / (len(means) - 1)
        total_var, total_dist = total_var + loss_v, total_dist + loss_d
    return total_var / batch, total_dist / batch


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_default_matches_the_authors_release(seed):
    gen = torch.Generator().manual_seed(seed)
    batch, dims, h, w = 3, 8, 9, 11
    emb = torch.randn(batch, dims, h, w, generator=gen, dtype=torch.float64)
    masks = torch.rand(8, h, w, generator=gen) > 0.6
    masks[5] = False  # empty: ignored
    masks[6] = False
    masks[6, 3, 4] = True  # one pixel: ignored by the release (mask_sum > 1)
    img = torch.tensor([0, 0, 0, 2, 2, 2, 0, 0])
    out = discriminative_loss(emb, masks, img)
    var, dist = _reference_release(emb, masks, img, 0.5, 1.5)
    assert out['loss_var'].item() == pytest.approx(float(var), rel=1e-10)
    assert out['loss_dist'].item() == pytest.approx(float(dist), rel=1e-10)
    assert out['loss_reg'].item() == 0.0
    assert float(var) > 0 and float(dist) > 0


def test_release_normalisers_hand_worked():
    """One image, three 1-d instances with 2 pixels each: A [0, 3] (mean 1.5, hinge
    (1.5 - 0.5)^2 = 1), B [1, 1] (mean 1, 0), C [10, 10] (mean 10, 0).
    release var = sum over instances = 1 (paper: 1/3); pairs: |A-B| = 0.5 -> (3 - 0.5)^2 = 6.25,
    |A-C| = 8.5 and |B-C| = 9 -> 0; release dist = 6.25 / (3 - 1) = 3.125 (paper: 2 * 6.25 /
    (3 * 2) = 2.0833); 'pixel' var = (1 + 1 + 0 + 0 + 0 + 0) / 6."""
    emb = torch.tensor([0.0, 3.0, 1.0, 1.0, 10.0, 10.0], dtype=torch.float64).view(1, 1, 1, 6)
    masks = torch.zeros(3, 1, 6, dtype=torch.bool)
    masks[0, 0, :2], masks[1, 0, 2:4], masks[2, 0, 4:] = True, True, True
    img = torch.zeros(3, dtype=torch.long)
    release = discriminative_loss(emb, masks, img, norm_eps=0.0)
    assert release['loss_var'].item() == pytest.approx(1.0, abs=1e-12)
    assert release['loss_dist'].item() == pytest.approx(3.125, abs=1e-12)
    paper = discriminative_loss(emb, masks, img, **PAPER)
    assert paper['loss_var'].item() == pytest.approx(1 / 3, abs=1e-12)
    assert paper['loss_dist'].item() == pytest.approx(12.5 / 6, abs=1e-12)
    pixel = discriminative_loss(emb, masks, img, variance_norm='pixel', norm_eps=0.0)
    assert pixel['loss_var'].item() == pytest.approx(2 / 6, abs=1e-12)


def test_unknown_norm_names_raise():
    emb, masks = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match='variance_norm'):
        discriminative_loss(emb, masks, torch.tensor([0]), variance_norm='mean')
    with pytest.raises(ValueError, match='distance_norm'):
        discriminative_loss(emb, masks, torch.tensor([0]), distance_norm='mean')
