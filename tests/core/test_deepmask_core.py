"""DeepMask / SharpMask core against independent references.

The release is Lua Torch7 (CUDA, cudnn): it cannot run here, so there is no golden data.
References: numpy's symmetric padding; the release's windowed formulation (crop, flatten,
Linear) written out against the dense convolutional head; brute-force transcriptions of the
release's loops (``createBBstruct`` scale levels, ``image.scale`` resampling, ``getTopScores``
index conversion, ``getTopMasks`` placement, ``getTopPatches`` cropping); hand-worked values.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insplug.core.deepmask import (DeepMaskHead, DeepMaskNet, SharpMaskRefinement,
                                   canonical_levels, crop_mask_targets, crop_windows,
                                   gather_windows, jitter_mask_windows, label_regions,
                                   mask_loss, negative_score_windows, paste_window_masks,
                                   positive_score_windows, pyramid_scales, score_loss,
                                   select_top_windows, symmetric_pad, torch_image_scale_matrix)


def test_symmetric_pad_matches_numpy():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float64).view(2, 3, 5, 4)
    for pad in (1, 2, 3):
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='symmetric')
        assert torch.equal(symmetric_pad(x, pad), torch.from_numpy(ref))


def _windowed_head(head, l3_window):
    """The release's training formulation on one cropped F x F window: 1x1 conv, ReLU, View,
    Linear; mask Linear; score Linear-Threshold-Linear (eval: ReLU)."""
    c = F.relu(F.conv2d(l3_window, head.reduce.weight, head.reduce.bias))
    emb = F.linear(c.flatten(1), head.embed.weight.flatten(1), head.embed.bias)
    mask = F.linear(emb, head.mask.weight.flatten(1), head.mask.bias)
    hid = F.relu(F.linear(emb, head.score_fc1.weight.flatten(1), head.score_fc1.bias))
    score = F.linear(hid, head.score_fc2.weight.flatten(1), head.score_fc2.bias)
    o = head.mask_size
    return emb, mask.view(-1, o, o), score[:, 0]


def test_dense_head_equals_windowed_head_at_every_window():
    torch.manual_seed(0)
    head = DeepMaskHead(in_channels=12, feat_size=4, mask_size=6, reduce_channels=5,
                        embed_channels=7, score_channels=9).double().eval()
    l3 = torch.randn(1, 12, 9, 11, dtype=torch.float64)
    emb = head.embedding(l3)
    assert emb.shape == (1, 7, 6, 8)
    score = head.score_logits(emb)[0]
    for i in range(6):
        for j in range(8):
            e, m, s = _windowed_head(head, l3[..., i:i + 4, j:j + 4])
            assert torch.allclose(emb[0, :, i, j], e[0], atol=1e-12, rtol=0)
            assert torch.allclose(head.mask_logits(emb[0, :, i, j][None]), m, atol=1e-12)
            assert abs(float(score[i, j] - s[0])) < 1e-12


def test_score_branch_threshold_in_training():
    head = DeepMaskHead(in_channels=4, feat_size=1, mask_size=2, reduce_channels=3,
                        embed_channels=3, score_channels=2, dropout=0.0).double()
    with torch.no_grad():
        head.score_fc1.weight.fill_(-1.0)
        head.score_fc1.bias.zero_()
        head.score_fc2.weight.fill_(1.0)
        head.score_fc2.bias.zero_()
    emb = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    head.train()
    assert float(head.score_logits(emb)) == pytest.approx(2e-6)  # Threshold(0, 1e-6)
    head.eval()
    assert float(head.score_logits(emb)) == 0.0  # ReLU (linear2convHead)


def _lua_level(d, obj, step=0.25):
    for s in range(-32, 33):
        if d > obj * 2 ** ((s - 1) * step) and d <= obj * 2 ** ((s + 1) * step):
            return s
    return None


def test_canonical_levels_match_release_loop():
    sides = torch.tensor([3.0, 50.0, 92.0, 92.5, 110.0, 200.0, 640.0, 1e-3, 80.0, 77.36])
    levels, valid = canonical_levels(sides, 92.0)
    for d, lv, ok in zip(sides.tolist(), levels.tolist(), valid.tolist()):
        ref = _lua_level(d, 92.0)
        assert ok == (ref is not None)
        if ok:
            assert lv == ref, d


def test_positive_windows_centred_at_canonical_scale():
    boxes = torch.tensor([[10.0, 20.0, 102.0, 60.0], [0.0, 0.0, 300.0, 100.0]])
    win, valid = positive_score_windows(boxes, 92.0, 192.0)
    assert valid.all()
    # box 0: d = 92: the release's scan takes the first s with 92 2^((s-1)/4) < d <=
    # 92 2^((s+1)/4): s = -1 (92 2^(-1/2) < 92 <= 92), so the window side is 192 2^(-1/4)
    half = 96 * 2 ** -0.25
    assert torch.allclose(win[0], torch.tensor([56 - half, 40 - half, 56 + half, 40 + half]))
    lv = _lua_level(300.0, 92.0)
    side = 192 * 2 ** (lv * 0.25)
    assert torch.allclose(win[1], torch.tensor([150 - side / 2, 50 - side / 2,
                                                150 + side / 2, 50 + side / 2]))


def test_jitter_windows_stay_within_release_tolerances():
    torch.manual_seed(0)
    boxes = torch.tensor([[40.0, 30.0, 140.0, 90.0]]).repeat(500, 1)
    win = jitter_mask_windows(boxes, 92.0, 192.0, shift=16.0, scale_jitter=0.25)
    side = win[:, 2] - win[:, 0]
    s = torch.log2(side / 192.0)
    s0 = math.log2(100 / 92.0)
    assert ((s - s0).abs() <= 0.25 + 1e-6).all() and (s - s0).abs().max() > 0.2
    centre = (win[:, :2] + win[:, 2:]) / 2
    off = (centre - torch.tensor([90.0, 60.0])).abs() / torch.pow(2.0, s)[:, None]
    assert (off <= 16 + 1e-4).all() and off.max() > 14
    # the labelled region is the central iSz / wSz of the window
    reg = label_regions(win, 160, 192)
    assert torch.allclose((reg[:, 2] - reg[:, 0]) / side, torch.full_like(side, 160 / 192))


def test_negative_windows_far_from_near_scale_objects():
    torch.manual_seed(1)
    boxes = torch.tensor([[20.0, 20.0, 80.0, 70.0], [100.0, 120.0, 220.0, 230.0]])
    win = negative_score_windows(boxes, 240, 320, 300, 92.0, 192.0, 16.0)
    side = win[:, 2] - win[:, 0]
    e = torch.log2(192.0 / side)  # image scale exponent of each window
    assert torch.allclose(e * 4, torch.round(e * 4), atol=1e-4)
    assert (e >= -3 - 1e-4).all() and (e <= 2 + 1e-4).all()
    centre = (win[:, :2] + win[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    levels, _ = canonical_levels(wh.max(1).values, 92.0)
    obj_e = -levels.float() * 0.25
    ctr = boxes[:, :2] + wh / 2
    for k in range(win.shape[0]):
        for n in range(2):
            if abs(float(obj_e[n] - e[k])) <= 2.5 + 1e-6:
                dist = float(torch.linalg.norm(centre[k] - ctr[n])) * 2 ** float(e[k])
                assert dist >= 48 - 1e-3


def test_crop_windows_integer_window_is_exact_crop_with_grey_outside():
    torch.manual_seed(0)
    img = torch.randn(1, 3, 20, 24, dtype=torch.float64)
    grey = torch.tensor([0.5, -0.25, 1.0], dtype=torch.float64)
    win = torch.tensor([[3.0, 5.0, 11.0, 13.0], [-4.0, -4.0, 4.0, 4.0]], dtype=torch.float64)
    out = crop_windows(img, torch.zeros(2, dtype=torch.long), win, 8, grey)
    assert torch.allclose(out[0], img[0, :, 5:13, 3:11], atol=1e-12)
    assert torch.allclose(out[1, :, 4:, 4:], img[0, :, :4, :4], atol=1e-12)
    assert torch.allclose(out[1, :, :3, :3], grey.view(3, 1, 1).expand(3, 3, 3), atol=1e-12)
    masks = torch.zeros(1, 20, 24)
    masks[0, 6:10, 4:9] = 1
    lbl = crop_mask_targets(masks, torch.tensor([[3.0, 5.0, 11.0, 13.0]]), 8)
    assert torch.equal(lbl[0], masks[0, 5:13, 3:11])


def test_losses_hand_worked():
    logits = torch.zeros(2, 3, 3)
    labels = torch.ones(2, 6, 6)
    assert float(mask_loss(logits, labels)) == pytest.approx(math.log(2))
    s = torch.tensor([2.0, -1.0])
    ref = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2 / 32
    assert float(score_loss(s, torch.tensor([1.0, 0.0]))) == pytest.approx(ref)
    # upsampling of the mask logits before the loss is bilinear with aligned corners
    x = torch.tensor([[[0.0, 3.0]]]).expand(1, 2, 2).contiguous().double().requires_grad_()
    lbl = torch.ones(1, 3, 3, dtype=torch.float64)
    mid = F.softplus(torch.tensor(-1.5, dtype=torch.float64))
    ref = (3 * F.softplus(torch.tensor(0.0)) + 3 * mid + 3 * F.softplus(torch.tensor(-3.0))) / 9
    assert float(mask_loss(x, lbl)) == pytest.approx(float(ref))
    assert torch.autograd.gradcheck(lambda t: mask_loss(t, lbl), (x,))


def _lua_scale_1d(src, dst_len):
    """Transcription of image.c ``scaleLinear_rowcol`` for one row."""
    src_len = len(src)
    dst = [0.0] * dst_len
    if dst_len > src_len:
        scale = (src_len - 1) / (dst_len - 1)
        for di in range(dst_len - 1):
            si_f = di * scale
            si_i = int(si_f)
            si_f -= si_i
            nxt = src[si_i + 1] if si_i + 1 < src_len else src[si_i]
            dst[di] = (1 - si_f) * src[si_i] + si_f * nxt
        dst[-1] = src[-1]
    elif dst_len < src_len:
        scale = src_len / dst_len
        si0_i, si0_f = 0, 0.0
        for di in range(dst_len):
            si1_f = (di + 1) * scale
            si1_i = int(si1_f)
            si1_f -= si1_i
            acc = (1 - si0_f) * src[si0_i]
            n = 1 - si0_f
            for si in range(si0_i + 1, si1_i):
                acc += src[si]
                n += 1
            if si1_i < src_len:
                acc += si1_f * src[si1_i]
                n += si1_f
            dst[di] = acc / n
            si0_i, si0_f = si1_i, si1_f
    else:
        dst = list(src)
    return dst


@pytest.mark.parametrize('src,dst', [(5, 13), (7, 3), (10, 4), (6, 6), (56, 113), (160, 113)])
def test_image_scale_matrix_matches_release_loops(src, dst):
    torch.manual_seed(src * 100 + dst)
    row = torch.randn(src, dtype=torch.float64)
    m = torch_image_scale_matrix(src, dst, torch.float64)
    assert torch.allclose(m @ row, torch.tensor(_lua_scale_1d(row.tolist(), dst),
                                                dtype=torch.float64), atol=1e-12)


def test_pyramid_scales_release_defaults():
    assert pyramid_scales() == pytest.approx([2 ** e for e in (-2.5, -2, -1.5, -1, -.5, 0, .5)])


def _lua_top(score_maps, num, release):
    """getTopScores: merge of per-scale sorted lists; returns (score, scale, row, col) 0-based."""
    lists = [sorted([(float(v), i + 1) for i, v in enumerate(s.flatten().tolist())],
                    key=lambda t: -t[0]) for s in score_maps]
    pos = [0] * len(lists)
    out = []
    for _ in range(num):
        best, k_best = 0.0, None
        for k, lst in enumerate(lists):
            if pos[k] < len(lst) and lst[pos[k]][0] > best:
                best, k_best = lst[pos[k]][0], k
        temp = lists[k_best][pos[k_best]][1]
        w = score_maps[k_best].shape[1]
        if release:
            x, y = max(1, temp // w), max(1, temp % w + 1)
        else:
            x, y = (temp - 1) // w + 1, (temp - 1) % w + 1
        pos[k_best] += 1
        out.append((1 / (1 + math.exp(-best)), k_best, x - 1, y - 1))
    return out


@pytest.mark.parametrize('release', [False, True])
def test_select_top_windows_matches_release_merge(release):
    torch.manual_seed(3)
    maps = [torch.randn(2, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)]
    probs, scale, row, col = select_top_windows(maps, 12, release_index=release)
    ref = _lua_top([torch.sigmoid(m) * 0 + m for m in maps], 12, release)
    for i, (p, k, r, c) in enumerate(ref):
        assert probs[i].item() == pytest.approx(p)
        assert (scale[i].item(), row[i].item(), col[i].item()) == (k, r, c)


def test_select_top_windows_release_index_hand_worked():
    # one 2 x 3 map, best window at 0-based (1, 1): 1-based index 5 -> x = 1, y = 3 (Lua)
    m = torch.full((2, 3), -5.0)
    m[1, 1] = 5.0
    _, _, r, c = select_top_windows([m], 1, release_index=True)
    assert (r.item(), c.item()) == (0, 2)
    _, _, r, c = select_top_windows([m], 1, release_index=False)
    assert (r.item(), c.item()) == (1, 1)


def test_paste_window_masks_matches_release_loops():
    torch.manual_seed(4)
    k, o, isz, h, w = 5, 6, 32, 50, 61
    logits = torch.randn(k, o, o, dtype=torch.float64) * 3
    scales = torch.tensor([0.5, 1.0, 2 ** 0.5, 2.0, 1.0], dtype=torch.float64)
    rows = torch.tensor([0, 2, 3, 5, 4])
    cols = torch.tensor([1, 0, 4, 6, 3])
    thr = 0.2
    out = paste_window_masks(logits, scales, rows, cols, isz, 16, h, w, thr)
    lthr = math.log(thr / (1 - thr))
    for n in range(k):
        s = float(scales[n])
        sz = math.floor(isz / s)
        rows_big = [_lua_scale_1d(r, sz) for r in logits[n].tolist()]  # rows first
        cols_t = list(map(list, zip(*rows_big)))
        big = list(map(list, zip(*[_lua_scale_1d(c, sz) for c in cols_t])))
        ref = torch.zeros(h, w, dtype=torch.bool)
        t, delta = 16 / s, isz / 2 / s
        for im in range(sz):
            ii = math.floor(int(rows[n]) * t - delta + im)
            for jm in range(sz):
                jj = math.floor(int(cols[n]) * t - delta + jm)
                if big[im][jm] > lthr and 0 <= ii < h and 0 <= jj < w:
                    ref[ii, jj] = True
        assert torch.equal(out[n], ref), n


def test_gather_windows_matches_release_patch_copy():
    torch.manual_seed(5)
    maps = torch.randn(3, 7, 9)
    rows, cols = torch.tensor([0, 2, 3]), torch.tensor([1, 3, 0])
    out = gather_windows(maps, rows, cols, 4, 2)
    for n in range(3):
        ref = torch.zeros(3, 4, 4)
        xx, yy = int(rows[n]) * 2, int(cols[n]) * 2
        dx, dy = min(4, 7 - xx), min(4, 9 - yy)
        ref[:, :dx, :dy] = maps[:, xx:xx + dx, yy:yy + dy]
        assert torch.equal(out[n], ref)


def _small_net(**kw):
    return DeepMaskNet(depth=18, base_channels=8, norm='bn', window_size=32, context=32,
                       mask_size=4, label_size=8, reduce_channels=4, embed_channels=8,
                       score_channels=8, **kw)


def test_sharpmask_refinement_shapes_and_release_widths():
    ref = SharpMaskRefinement()
    widths = [(m[0].in_channels, m[2].out_channels, m[4].out_channels) for m in ref.horizontal]
    assert widths == [(1024, 32, 16), (512, 16, 8), (256, 8, 4), (64, 4, 2)]
    assert [m[2].out_channels for m in ref.vertical] == [16, 8, 4, 2]
    assert ref.final.in_channels == 2 and ref.v0.out_features == 10 * 10 * 32
    torch.manual_seed(0)
    net = _small_net(sharpmask=dict(km=16, ks=16, hidden=(8, 8, 8, 4))).eval()
    out = net.forward_windows(torch.randn(2, 3, 64, 64))
    assert out['refined'].shape == (2, 32, 32) and out['mask'].shape == (2, 4, 4)


def test_dense_refinement_equals_window_refinement_given_the_same_maps():
    """At inference the release applies the horizontal nets densely and crops them per window;
    the refinement of those crops equals refining the cropped maps directly."""
    torch.manual_seed(0)
    net = _small_net(sharpmask=dict(km=16, ks=16, hidden=(8, 8, 8, 4))).double().eval()
    emb = torch.randn(2, 8, dtype=torch.float64)
    hmaps = [torch.randn(1, 16 // 2 ** (i + 1), 2 ** i * 6 + 1, 2 ** i * 6 + 1,
                         dtype=torch.float64) for i in range(4)]
    rows, cols = torch.tensor([0, 1]), torch.tensor([2, 0])
    patches = [gather_windows(m[0], rows, cols, 2 * 2 ** i, 2 ** i) for i, m in enumerate(hmaps)]
    dense = net.refine(emb, patches)
    for n in range(2):
        crops = [m[..., int(rows[n]) * 2 ** i:int(rows[n]) * 2 ** i + 2 * 2 ** i,
                   int(cols[n]) * 2 ** i:int(cols[n]) * 2 ** i + 2 * 2 ** i]
                 for i, m in enumerate(hmaps)]
        assert torch.allclose(dense[n], net.refine(emb[n:n + 1], crops)[0], atol=1e-12)


def test_propose_window_geometry_and_boxes():
    """A window whose mask logits are all positive fills exactly its iSz / s square at
    (16 r - iSz / 2) / s, clipped to the image."""
    torch.manual_seed(0)
    net = _small_net().eval()
    with torch.no_grad():
        net.head.mask.weight.zero_()
        net.head.mask.bias.fill_(5.0)
    image = torch.randn(3, 40, 52)
    res = net.propose(image, torch.zeros(3), [1.0], num_proposals=4)
    assert res['masks'].shape == (4, 40, 52)
    probs, _, rows, cols = select_top_windows(
        [net.head.score_logits(net.head.embedding(net.trunk(
            F.pad(image[None], (16, 16, 16, 16)))[3]))[0]], 4)
    assert torch.allclose(res['scores'], probs)
    for n in range(4):
        top, left = int(rows[n]) * 16 - 16, int(cols[n]) * 16 - 16
        ref = torch.zeros(40, 52, dtype=torch.bool)
        ref[max(top, 0):top + 32, max(left, 0):left + 32] = True
        assert torch.equal(res['masks'][n], ref)
        ys, xs = torch.nonzero(ref, as_tuple=True)
        assert res['boxes'][n].tolist() == [xs.min().item(), ys.min().item(),
                                            xs.max().item() + 1, ys.max().item() + 1]


def test_sample_windows_and_losses_backpropagate():
    torch.manual_seed(0)
    net = _small_net().train()
    images = torch.randn(2, 3, 64, 80)
    masks = [torch.zeros(2, 64, 80), torch.zeros(1, 64, 80)]
    masks[0][0, 10:30, 12:40] = 1
    masks[0][1, 40:60, 50:70] = 1
    masks[1][0, 5:50, 5:60] = 1
    boxes = [torch.tensor([[12.0, 10, 40, 30], [50, 40, 70, 60]]), torch.tensor([[5.0, 5, 60, 50]])]
    cfg = dict(mask_per_image=3, pos_per_image=2, neg_per_image=2, shift=4.0, min_area=16)
    samples = net.sample_windows(images, [(64, 80), (60, 70)], boxes, masks, torch.zeros(3), cfg)
    assert samples['mask_inputs'].shape == (6, 3, 64, 64)
    assert samples['mask_labels'].shape == (6, 8, 8) and samples['mask_labels'].sum() > 0
    assert samples['score_labels'].tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    losses = net.loss_windows(samples)
    sum(losses.values()).backward()
    assert net.trunk.conv1.weight.grad.abs().sum() > 0 and net.head.mask.weight.grad is not None
