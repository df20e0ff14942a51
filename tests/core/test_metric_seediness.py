"""Deep metric learning with seediness (Fathi et al., 2017) core.

No official code exists; references are the paper's formulas worked by hand, brute-force
loops (pair losses, grown-mask IoU targets, greedy seed selection) and gradient checks.
"""
import math

import pytest
import torch

from insplug.core.embedding_grouping.metric_seediness import (
    SeedinessOutputs, logistic_pair_loss, metric_seediness_inference, metric_seediness_loss,
    pair_similarity, sample_per_instance, seediness_targets, select_seeds)


def test_similarity_hand_values():
    a = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0], [math.sqrt(math.log(3)), 0.0], [3.0, 4.0]],
                     dtype=torch.float64)
    sim = pair_similarity(a, b)[0]
    assert float(sim[0]) == 1.0  # 2 / (1 + e^0)
    assert abs(float(sim[1]) - 0.5) < 1e-12  # 2 / (1 + 3)
    assert abs(float(sim[2]) - 2 / (1 + math.exp(25))) < 1e-20


def test_logistic_pair_loss_brute_force_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 3, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    counts = torch.bincount(ids)
    raw = [[1 / float(counts[ids[p]] * counts[ids[q]]) for q in range(7)] for p in range(7)]
    total = sum(map(sum, raw))
    ref = 0.0
    for p in range(7):
        for q in range(7):
            d2 = float((emb[p] - emb[q]).pow(2).sum())
            s = 2 / (1 + math.exp(d2))
            term = math.log(s) if ids[p] == ids[q] else math.log(1 - s) if p != q else 0.0
            ref -= raw[p][q] / total * term
    assert abs(float(logistic_pair_loss(emb, ids)) - ref) < 1e-10
    emb.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: logistic_pair_loss(e, ids), (emb,))


def test_sample_per_instance():
    ids = torch.tensor([5] * 30 + [0] * 100 + [2] * 3)[torch.randperm(133)]
    idx = sample_per_instance(ids, 10)
    assert idx.unique().numel() == idx.numel()
    assert sorted(int((ids[idx] == k).sum()) for k in (0, 2, 5)) == [3, 10, 10]


def test_seediness_targets_brute_force():
    g = torch.Generator().manual_seed(1)
    num_pixels = 40
    ids = torch.randint(0, 3, (num_pixels,), generator=g)
    # embeddings: near the centre of the group, one pixel of group 1 far away
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    emb = centres[ids] + 0.3 * torch.randn(num_pixels, 2, generator=g)
    emb[ids.tolist().index(1)] = torch.tensor([10.0, 10.0])
    id_masks = torch.stack([ids == k for k in range(3)])
    id_labels = torch.tensor([0, 4, 2])  # class + 1 (group 0 = background)
    sampled = torch.arange(num_pixels)
    thr = (0.25, 0.5, 0.75)
    target = seediness_targets(emb, sampled, ids, id_masks, id_labels, thr, 0.5)
    for p in range(num_pixels):
        for l, tau in enumerate(thr):
            grown = [q for q in range(num_pixels)
                     if 2 / (1 + math.exp(float((emb[p] - emb[q]).pow(2).sum()))) >= tau]
            own = [q for q in range(num_pixels) if ids[q] == ids[p]]
            iou = len(set(grown) & set(own)) / len(set(grown) | set(own))
            expect = int(id_labels[ids[p]]) if ids[p] > 0 and iou >= 0.5 else 0
            assert int(target[p, l]) == expect, (p, l)
    assert int(target[ids.tolist().index(1)].max()) == 0  # the far pixel grows a bad mask
    assert (target[ids == 2] == 2).any()


def select_seeds_reference(score, emb, n, alpha, min_s):
    score = [float(s) if s >= min_s else 0.0 for s in score]
    seeds = []
    for _ in range(n):
        best, value = None, 0.0
        for p in range(len(score)):
            if seeds:
                d = min(float((emb[p] - emb[s]).pow(2).sum()) for s in seeds)
                v = score[p] * d ** alpha
            else:
                v = score[p]
            if v > value:
                best, value = p, v
        if best is None:
            break
        seeds.append(best)
    return seeds


@pytest.mark.parametrize('alpha,min_s', [(0.3, 0.0), (1.0, 0.2)])
def test_select_seeds_brute_force(alpha, min_s):
    g = torch.Generator().manual_seed(2)
    score = torch.rand(50, generator=g, dtype=torch.float64)
    emb = torch.randn(50, 3, generator=g, dtype=torch.float64)
    ours = select_seeds(score, emb, 8, alpha, min_s).tolist()
    assert ours == select_seeds_reference(score, emb, 8, alpha, min_s)
    # with duplicated embeddings, the diversity term forbids picking a copy twice
    emb2 = emb.clone()
    emb2[1] = emb2[0]
    score2 = score.clone()
    score2[:2] = 0.99
    seeds = select_seeds(score2, emb2, 10, alpha, min_s).tolist()
    assert not {0, 1} <= set(seeds)


def test_inference_two_objects():
    """Two objects of classes 1 and 3 with well-separated embeddings; seediness logits put the
    class mass at threshold 0.5. Expect exactly those masks, labels and scores."""
    h, w, k = 6, 8, 4
    emb = torch.zeros(2, h, w)
    obj1 = torch.zeros(h, w, dtype=torch.bool)
    obj1[:3, :3] = True
    obj2 = torch.zeros(h, w, dtype=torch.bool)
    obj2[3:, 5:] = True
    emb[0][obj1] = 4.0
    emb[1][obj2] = 4.0
    logits = torch.full((3, k + 1, h, w), -10.0)
    logits[:, 0] = 10.0  # background everywhere at every threshold ...
    logits[1, 0][obj1 | obj2] = -10.0
    logits[1, 2][obj1] = 10.0  # ... except class 1 (channel 2) at tau 0.5 on object 1
    logits[1, 4][obj2] = 9.0  # class 3 (channel 4) on object 2
    masks, labels, scores = metric_seediness_inference(
        emb, logits.flatten(0, 1), (0.25, 0.5, 0.75), max_seeds=5, min_seediness=0.5)
    assert masks.shape[0] == 2
    assert torch.equal(masks[0], obj1) and torch.equal(masks[1], obj2)
    assert labels.tolist() == [1, 3]
    expect = torch.softmax(torch.tensor([-10.0, -10, 10, -10, -10]), 0)[2]
    assert torch.allclose(scores[0], expect)


def test_loss_and_outputs_end_to_end():
    torch.manual_seed(0)
    head = SeedinessOutputs(8, 3, embed_dims=4, num_thresholds=3, in_stride=1,
                            in_index=(0, 0))
    feats = (torch.randn(2, 8, 12, 12),)
    emb, seed = head(feats)
    assert emb.shape == (2, 4, 12, 12) and seed.shape == (2, 12, 12, 12)
    masks = torch.zeros(3, 12, 12, dtype=torch.bool)
    masks[0, :6, :6] = True
    masks[1, 6:, 6:] = True
    masks[2, 2:9, 2:9] = True
    losses = metric_seediness_loss(emb, seed, masks, torch.tensor([0, 2, 1]),
                                   torch.tensor([0, 0, 1]), loss_stride=2)
    assert set(losses) == {'loss_embed', 'loss_seediness'}
    sum(losses.values()).backward()
    assert head.embedding.conv.weight.grad.abs().sum() > 0
    assert head.seediness.conv.weight.grad.abs().sum() > 0
