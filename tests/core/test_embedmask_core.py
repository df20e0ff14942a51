"""EmbedMask maths: probabilities from embeddings by hand, the margin prior, logits, the
sampling rule, group statistics and the mask loss against the Lovasz reference."""
import math

import pytest
import torch

from insplug.core.embedmask.embedding import (box_region, embed_mask_loss, embedding_distance,
                                              group_means, margin_bias, mask_logits,
                                              mask_probability, select_mask_samples,
                                              smooth_loss)
from insplug.core.losses.lovasz import lovasz_hinge_flat


def test_probability_by_hand_and_prior_margin():
    pixel = torch.zeros(3, 1, 2)
    pixel[:, 0, 1] = torch.tensor([1.0, 2.0, 2.0])  # distance^2 3^2 = 9 from the origin
    q = torch.zeros(2, 3)
    q[1] = torch.tensor([1.0, 2.0, 2.0])
    s = torch.tensor([0.5, 2.0])
    p = mask_probability(pixel, q, s)
    assert torch.allclose(p[0, 0], torch.tensor([1.0, math.exp(-4.5)]))
    assert torch.allclose(p[1, 0], torch.tensor([math.exp(-18.0), 1.0]))
    # per-dimension margins weight each squared difference
    sd = torch.tensor([[1.0, 0.0, 0.5]])
    assert torch.allclose(embedding_distance(pixel, q[:1], sd)[0, 0, 1], torch.tensor(1 + 2.0))
    # the initial margin exp(bias) puts probability 0.5 at distance prior_margin
    m = math.exp(margin_bias(2.0))
    at_prior = mask_probability(torch.tensor([[[2.0]]]), torch.zeros(1, 1), torch.tensor([m]))
    assert float(at_prior) == pytest.approx(0.5)


def test_logits_invert_probabilities():
    v = torch.tensor([1e-3, 0.1, math.log(2.0), 3.0, 50.0], dtype=torch.float64)
    p = torch.exp(-v).clamp(1e-9, 1 - 1e-9)
    assert torch.allclose(mask_logits(v), torch.log(p) - torch.log1p(-p), atol=1e-6)


def test_box_region_and_sampling_rule():
    r = box_region(torch.tensor([[1.0, 1.0, 3.0, 2.0]]), 4, 5, pad=0.5)  # -> [0, 4] x [0.5, 2.5]
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0:3, 0:4] = True  # cell centres x 0.5..3.5 and y 0.5..2.5 (bounds inclusive)
    assert torch.equal(r[0], expected)
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    pred = torch.tensor([[0.0, 0, 10, 9], [0, 0, 20, 20], [20, 20, 25, 25], [20, 20, 24, 24]])
    index = torch.tensor([0, 0, 1, 1])
    # object 0: IoU 0.9 and 0.25 -> only the first; object 1: 0.25, 0.16 -> its best only
    assert select_mask_samples(pred, gt, index, 2).tolist() == [True, False, True, False]


def test_group_means_and_smooth_loss_by_hand():
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    group = torch.tensor([0, 0, 1])
    assert torch.allclose(group_means(values, group, 3),
                          torch.tensor([[2.0, 1.0], [5.0, 5.0], [0.0, 0.0]]))
    # object 0 deviations: (1 + 1) + (1 + 1) = 4, object 1: 0; both in image 0 -> 4 / 2;
    # two images -> / 2
    loss = smooth_loss(values, group, torch.tensor([0, 0]), 2, 2)
    assert float(loss) == pytest.approx(1.0)


def test_mask_loss_is_lovasz_of_logits_in_region():
    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(3, 4, 4, generator=gen, dtype=torch.float64) * 3
    target = (torch.rand(3, 4, 4, generator=gen) > 0.5).double()
    valid = torch.zeros(3, 4, 4, dtype=torch.bool)
    valid[:, 1:3, :] = True
    image = torch.tensor([0, 0, 1])
    per = [float(lovasz_hinge_flat(mask_logits(dist[i])[valid[i]], target[i][valid[i]]))
           for i in range(3)]
    expected = ((per[0] + per[1]) / 2 + per[2]) / 2
    assert float(embed_mask_loss(dist, target, valid, image, 2)) == pytest.approx(expected)
    empty = embed_mask_loss(dist[:0], target[:0], valid[:0], image[:0], 2)
    assert float(empty) == 0.0
