"""CountSeg losses on hand-worked counts: the lower-count ranking loss, the stage-1 and stage-2
terms, the top-count peak selection and absent-class sampling (independent arithmetic)."""
import math

import torch
import torch.nn.functional as F

from insplug.core.countseg import (count_prediction, ranking_loss, sample_absent_classes,
                                   stage1_loss, stage2_loss, top_count_peak_mask)


def const_density(values, h=2, w=2):
    """(B, K) predicted counts -> constant density maps whose spatial mean is that count."""
    v = torch.tensor(values, dtype=torch.float64)
    return v[..., None, None].expand(*v.shape, h, w).clone()


def test_ranking_loss_hand_worked():
    # counts >= t = 5 with predictions 3.0, 7.0, 4.5: max(0, 5 - p) = 2, 0, 0.5 -> mean 5/6
    pred = torch.tensor([3.0, 7.0, 4.5], dtype=torch.float64)
    assert math.isclose(ranking_loss(pred, 5).item(), (2 + 0 + 0.5) / 3)
    assert ranking_loss(pred[:0], 5).item() == 0.0


def test_stage1_loss_hand_worked():
    # image 0: class 0 count 2 (predicted 1.5), class 1 count 0, class 2 count 7 (predicted 4)
    # image 1: class 0 count 0, class 1 count 4 (predicted 4.5), class 2 count 5 (predicted 6)
    counts = torch.tensor([[2., 0., 7.], [0., 4., 5.]], dtype=torch.float64)
    density = const_density([[1.5, 9.0, 4.0], [0.3, 4.5, 6.0]])
    scores = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 2.0, 3.0]], dtype=torch.float64)
    out = stage1_loss(scores, density, counts, subitizing=5, rank_weight=0.1)
    # regression only for 1 <= count <= 4: (1.5-2)^2, (4.5-4)^2 -> mean 0.25
    assert math.isclose(out['loss_count'].item(), 0.25)
    # ranking for counts >= 5: predictions 4 and 6 -> max(0,1), max(0,-1) -> mean 0.5, x 0.1
    assert math.isclose(out['loss_rank'].item(), 0.05)
    labels = (counts > 0).double()
    ref = -(labels * F.logsigmoid(scores) + (1 - labels) * F.logsigmoid(-scores)).mean()
    assert math.isclose(out['loss_cls'].item(), ref.item(), rel_tol=1e-12)


def test_top_count_peaks():
    crm = torch.tensor([[[[5., 0., 3.], [0., 0., 0.], [4., 0., 1.]],
                         [[5., 0., 3.], [0., 0., 0.], [3., 0., 1.]]]])
    peak_map = crm > 0
    # class 0: count 2 -> 5 and 4; class 1: count 2 -> 5 and the tie 3, 3 (both kept, >=)
    got = top_count_peak_mask(crm, peak_map, torch.tensor([[2, 2]]))
    assert got[0, 0].nonzero().tolist() == [[0, 0], [2, 0]]
    assert got[0, 1].nonzero().tolist() == [[0, 0], [0, 2], [2, 0]]
    # count above the number of peaks: all; count 0: none
    got = top_count_peak_mask(crm, peak_map, torch.tensor([[9, 0]]))
    assert torch.equal(got[0, 0], peak_map[0, 0]) and not got[0, 1].any()


def test_absent_class_sampling():
    counts = torch.tensor([[1, 0, 0, 0], [1, 0, 2, 0], [0, 0, 3, 0], [0, 0, 0, 0],
                           [0, 0, 0, 1]])
    # VOC release (neg_prob 1.1): every absent class
    assert torch.equal(sample_absent_classes(counts, 0.2, 1.1), counts == 0)
    # neg_prob 0: classes present in >= 20% of the batch (0: 2/5, 2: 2/5, 3: 1/5) keep every
    # absent entry; class 1 (present in 0/5, rare) loses all
    got = sample_absent_classes(counts, 0.2, 0.0)
    expected = (counts == 0).clone()
    expected[:, 1] = False
    assert torch.equal(got, expected)


def test_stage2_loss_hand_worked():
    counts = torch.tensor([[2., 0.], [6., 0.]], dtype=torch.float64)
    density = torch.zeros(2, 2, 1, 2, dtype=torch.float64)
    density[0, 0] = torch.tensor([[1.0, 3.0]])   # mean 2.0 (count 2: no count error)
    density[0, 1] = torch.tensor([[-1.0, 0.0]])  # absent: mean -0.5
    density[1, 0] = torch.tensor([[2.0, 4.0]])   # count 6 >= 5: mean 3 -> rank 0.1 * 2
    density[1, 1] = torch.tensor([[0.0, 1.0]])   # absent: mean 0.5
    peaks = torch.zeros(2, 2, 1, 2, dtype=torch.bool)
    peaks[0, 0, 0, 1] = True   # the top-count peak of the in-range class
    peaks[1, 0, 0, 0] = True   # count 6 is above the range: not a spatial target
    absent = counts == 0
    scores = torch.zeros(2, 2, dtype=torch.float64)
    out = stage2_loss(scores, density, counts, peaks, absent, subitizing=5, rank_weight=0.1)

    def bce(x, t):
        return -(t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 / (1 + math.exp(x))))
    assert math.isclose(out['loss_spatial_pos'].item(), bce(3.0, 1))
    neg = [-1.0, 0.0, 0.0, 1.0]
    assert math.isclose(out['loss_spatial_neg'].item(), sum(bce(v, 0) for v in neg) / 4)
    # regression over in-range (count 2, pred 2) and sampled absent (0 vs -0.5, 0 vs 0.5)
    assert math.isclose(out['loss_count'].item(), (0 + 0.25 + 0.25) / 3)
    assert math.isclose(out['loss_rank'].item(), 0.2)
    assert math.isclose(out['loss_cls'].item(), math.log(2))


def test_count_prediction():
    density = const_density([[2.4, 3.6, 1.2]])
    scores = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64)
    assert count_prediction(scores, density).tolist() == [[2.0, 0.0, 1.0]]
