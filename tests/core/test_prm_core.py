"""PRM core: peak finding against a brute-force local-max search, peak stimulation's release
gradient, batched peak back-propagation against the release's one-backward-per-peak loop, and
proposal scoring against a direct per-proposal evaluation with OpenCV's morphological
gradient."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from insplug.core.prm import (find_peaks, local_peak_map, morphological_gradient,
                              peak_backprop_mode, peak_response_maps, peak_stimulation,
                              proposal_scores, select_inference_peaks, select_proposals)


def brute_force_peaks(m, win):
    """A pixel is a peak when it is >= every pixel of its window and > every pixel that comes
    before it in raster order (first maximum wins ties); outside pixels are -inf."""
    h, w = m.shape
    r = win // 2
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            ok = True
            for yy in range(max(0, y - r), min(h, y + r + 1)):
                for xx in range(max(0, x - r), min(w, x + r + 1)):
                    if (yy, xx) == (y, x):
                        continue
                    before = (yy, xx) < (y, x)
                    if m[yy, xx] > m[y, x] or (before and m[yy, xx] == m[y, x]):
                        ok = False
            out[y, x] = ok
    return out


@pytest.mark.parametrize('win', [3, 5])
def test_local_peaks_match_brute_force(win):
    g = torch.Generator().manual_seed(win)
    crm = torch.randn(2, 3, 9, 11, generator=g)
    crm[0, 0, 4, 4:6] = 5.0  # a plateau of two equal maxima: only the first is a peak
    crm[1, 2] = torch.randint(0, 3, (9, 11), generator=g).float()  # many ties
    got = local_peak_map(crm, win)
    for b in range(2):
        for k in range(3):
            expected = brute_force_peaks(crm[b, k].numpy(), win)
            assert np.array_equal(got[b, k].numpy(), expected), (b, k)
    assert got[0, 0, 4, 4] and not got[0, 0, 4, 5]


def test_median_filter_and_peak_list():
    crm = torch.tensor([[[[1., 0., 3.], [0., 0., 0.], [2., 0., 0.5]]]])
    peak_map, peak_list = find_peaks(crm, 3, 'median')  # median of 9 values: 0
    # window maxima: 1 at (0,0), 3 at (0,2), 2 at (2,0), 0.5 at (2,2); the zeros lose ties
    assert peak_map[0, 0].nonzero().tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]
    expected = brute_force_peaks(crm[0, 0].numpy(), 3) & (crm[0, 0].numpy() >= 0)
    assert np.array_equal(peak_map[0, 0].numpy(), expected)
    assert peak_list.tolist() == [[0, 0, y, x] for y, x in zip(*np.nonzero(expected))]
    # a numeric filter drops peaks below it
    peak_map, _ = find_peaks(crm, 3, 2.5)
    assert peak_map.sum() == 1 and peak_map[0, 0, 0, 2]


def test_peak_stimulation_value_and_release_gradient():
    crm = torch.tensor([[[[4., 0., 0., 2.], [0., 0., 0., 0.], [0., 0., 1., 0.]]]],
                       requires_grad=True)
    scores, peak_map, _ = peak_stimulation(crm, 3, None)
    # peaks 4, 2, 1 (and zeros are not window maxima of windows holding a larger value)
    assert peak_map.sum() == 3
    assert torch.allclose(scores, torch.tensor([[7. / 3]]))
    scores.sum().backward()
    # release: gradient 1 at each peak, not 1/3
    assert torch.equal(crm.grad, peak_map.float())
    crm.grad = None
    scores, _, _ = peak_stimulation(crm, 3, None, exact_grad=True)
    scores.sum().backward()
    assert torch.allclose(crm.grad, peak_map.float() / 3)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(4, 2, 1))

    def forward(self, x):
        return self.body(x)


def test_batched_peak_backprop_equals_one_pass_per_peak():
    torch.manual_seed(0)
    net = TinyNet().double().eval()
    with torch.no_grad():
        net.body[1].running_mean.uniform_(-1, 1)
    img = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        _, peak_list = find_peaks(net(img), 3, 'median')
    assert len(peak_list) >= 2
    with peak_backprop_mode(net):
        batched = peak_response_maps(net, img, peak_list, chunk=3)
        # the release's loop: one backward per peak on the single image
        loop = []
        for b, k, y, x in peak_list.tolist():
            inp = img.clone().requires_grad_(True)
            crm = net(inp)
            seed = torch.zeros_like(crm)
            seed[b, k, y, x] = 1
            crm.backward(seed)
            prm = inp.grad.sum(1).clamp(min=0)
            loop.append(prm / prm.sum())
    assert torch.allclose(batched, torch.cat(loop), rtol=1e-10, atol=1e-14)
    assert torch.allclose(batched.flatten(1).sum(1), torch.ones(len(peak_list), dtype=torch.float64))
    # outside the block the convs are plain again, and give the same forward values
    assert all('forward' not in vars(m) for m in net.modules())


def test_morphological_gradient_matches_opencv():
    rng = np.random.RandomState(0)
    masks = rng.rand(4, 15, 17) > 0.6
    masks[0] = False
    masks[1] = True
    got = morphological_gradient(torch.from_numpy(masks), 5).numpy()
    for m, g in zip(masks, got):
        ref = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_GRADIENT,
                               np.ones((5, 5), np.uint8)).astype(bool)
        assert np.array_equal(g, ref)


def test_proposal_scores_match_direct_evaluation():
    rng = np.random.RandomState(1)
    h, w = 20, 24
    prms = rng.rand(3, h, w)
    prms /= prms.sum((1, 2), keepdims=True)
    bg = (rng.rand(3, h, w) > 0.5).astype(np.float64)
    props = rng.rand(6, h, w) > 0.5
    props[4] = False
    props[4, 0, 0] = True  # too small (area 1 < 0.01 * h*w)
    props[5] = True        # too large
    got = proposal_scores(torch.from_numpy(prms), torch.from_numpy(props), torch.from_numpy(bg),
                          balance=0.8, penalty=0.1, contour_width=3, size_limits=(0.01, 0.85))
    for i in range(3):
        for j in range(6):
            area = props[j].sum()
            if area < 0.01 * h * w or area >= 0.85 * h * w:
                assert got[i, j] == float('-inf')
                continue
            contour = cv2.morphologyEx(props[j].astype(np.uint8), cv2.MORPH_GRADIENT,
                                       np.ones((3, 3), np.uint8)).astype(bool)
            ref = 0.8 * prms[i][props[j]].sum() + prms[i][contour].sum() - \
                0.1 * bg[i][props[j]].sum()
            assert abs(got[i, j].item() - ref) < 1e-12
    best, score, found = select_proposals(torch.tensor([[1., 3., 3.], [-float('inf')] * 3]))
    assert best.tolist()[0] == 1 and found.tolist() == [True, False]


def test_inference_peak_rules():
    scores = torch.tensor([0.2, -0.1, 0.7])
    values = torch.tensor([35., 40., 10., 25.])
    labels = torch.tensor([0, 1, 2, 2])
    # PRM: class score >= 0 and value > 30
    assert select_inference_peaks(scores, values, labels, 0.0, 30.0, 'prm').tolist() == \
        [True, False, False, False]
    # CountSeg: classes >= 0.5 -> class 2 only; threshold min(20, max(10, 25)) = 20
    assert select_inference_peaks(scores, values, labels, 0.5, 20.0, 'countseg').tolist() == \
        [False, False, False, True]
    # no class reaches 0.9: threshold drops to the lowest score (all classes), peak threshold
    # to min(50, 40) = 40
    assert select_inference_peaks(scores, values, labels, 0.9, 50.0, 'countseg').tolist() == \
        [False, True, False, False]
