"""BlendMask blender and losses (insplug.core.blendmask.blender)."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from insplug.core.blendmask import blender as B


def naive_blend(bases, boxes, batch_inds, attns, k, m, r, scale):
    """One instance at a time, written directly from the paper's description."""
    out = []
    for n in range(boxes.size(0)):
        img = bases[int(batch_inds[n])][None]
        roi = torch.cat([torch.zeros(1, 1), boxes[n:n + 1]], 1)
        pooled = roi_align(img, roi, (r, r), scale, 1, aligned=True)[0]  # (K, R, R)
        a = attns[n].reshape(1, k, m, m)
        a = F.interpolate(a, size=(r, r), mode='bilinear', align_corners=False)[0]
        weights = torch.exp(a) / torch.exp(a).sum(0, keepdim=True)
        out.append(sum(pooled[i] * weights[i] for i in range(k)))
    return torch.stack(out)


def random_case(n=5, k=4, m=14, gen_seed=0):
    gen = torch.Generator().manual_seed(gen_seed)
    bases = torch.randn(2, k, 32, 40, generator=gen, dtype=torch.float64)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 100
    boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=gen, dtype=torch.float64) * 50],
                      1)
    batch_inds = torch.randint(0, 2, (n,), generator=gen)
    attns = torch.randn(n, k * m * m, generator=gen, dtype=torch.float64)
    return bases, boxes, batch_inds, attns


def test_blend_shapes_and_equality_with_naive_loop():
    bases, boxes, batch_inds, attns = random_case()
    rois = B.pool_bases(bases, boxes, batch_inds, resolution=56, spatial_scale=0.25)
    assert rois.shape == (5, 4, 56, 56)
    out = B.blend(rois, attns, attn_size=14)
    assert out.shape == (5, 56, 56)
    ref = naive_blend(bases, boxes, batch_inds, attns, 4, 14, 56, 0.25)
    assert torch.allclose(out, ref, atol=1e-10)


def test_softmax_over_bases_makes_blend_a_convex_combination():
    # constant bases b_k: every output pixel is a convex combination of the b_k
    bases = torch.arange(1.0, 5.0).view(1, 4, 1, 1).expand(1, 4, 16, 16).contiguous()
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    rois = B.pool_bases(bases, boxes, torch.zeros(1, dtype=torch.long), 28, 0.25)
    out = B.blend(rois, torch.randn(1, 4 * 7 * 7) * 5, attn_size=7)
    assert (out > 1.0).all() and (out < 4.0).all()
    # uniform attention -> plain mean of the bases
    out = B.blend(rois, torch.zeros(1, 4 * 7 * 7), attn_size=7)
    assert torch.allclose(out, torch.full_like(out, 2.5))
    # one dominant attention channel selects its basis
    attn = torch.zeros(1, 4, 7, 7)
    attn[:, 2] = 50.0
    out = B.blend(rois, attn.flatten(1), attn_size=7)
    assert torch.allclose(out, torch.full_like(out, 3.0))


def test_gradients_reach_bases_and_attentions():
    bases, boxes, batch_inds, attns = random_case(n=3, k=4, m=4, gen_seed=1)
    bases.requires_grad_(True)
    attns.requires_grad_(True)
    fn = lambda b, a: B.blend(B.pool_bases(b, boxes, batch_inds, 8, 0.25), a, 4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (bases, attns), eps=1e-6, atol=1e-5)
    fn(bases, attns).sum().backward()
    assert bases.grad.abs().sum() > 0 and attns.grad.abs().sum() > 0


def test_blend_rejects_wrong_attention_size_and_handles_empty():
    rois = torch.zeros(2, 4, 8, 8)
    with pytest.raises(ValueError, match='attns'):
        B.blend(rois, torch.zeros(2, 4 * 5 * 5), attn_size=14)
    assert B.blend(torch.zeros(0, 4, 8, 8), torch.zeros(0, 4 * 14 * 14)).shape == (0, 8, 8)


def test_crop_and_resize_masks_hand_worked():
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 0:10, 0:5] = True  # left half of the box below
    out = B.crop_and_resize_masks(masks, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), 4)
    assert torch.equal(out[0], torch.tensor([[1., 1, 0, 0]] * 4))


def test_centerness_and_mask_loss_hand_worked():
    from insplug.core.fcos import centerness_targets
    # points (5, 5) and (2, 5) in the box (0, 0, 10, 10): (l, t, r, b) distances
    ctr = centerness_targets(torch.tensor([[5.0, 5.0, 5.0, 5.0], [2.0, 5.0, 8.0, 5.0]]))
    assert torch.allclose(ctr, torch.tensor([1.0, (2.0 / 8.0) ** 0.5]))
    logits = torch.zeros(2, 3, 3)
    targets = torch.ones(2, 3, 3)
    # BCE(0, 1) = log 2 everywhere; weighted sum / denorm
    loss = B.blender_mask_loss(logits, targets, ctr, ctr.sum())
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_semantic_map_later_annotation_wins_and_zero_padding():
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 0:8, 0:8] = True       # small instance of class 3 first
    masks[1, :, :] = True           # big instance of class 1 painted over it (later wins)
    sem = B.thing_semantic_map(masks, torch.tensor([3, 1]))
    assert sem.unique().tolist() == [2]
    assert B.thing_semantic_map(masks.flip(0), torch.tensor([1, 3]))[0, 0] == 4
    # sampling at (8i, 8j) of a 12 x 12 map taken as zero-padded to 3 x 3 outputs
    sem = torch.arange(144).reshape(12, 12)
    out = B.downsample_semantic(sem, 8, (3, 3))
    assert out.tolist() == [[0, 8, 0], [96, 104, 0], [0, 0, 0]]
    assert B.downsample_semantic(sem, 8).tolist() == [[0]]  # F.interpolate size floor(12/8)


def test_semantic_targets_background_zero_and_small_on_top():
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :, :] = True           # big instance of class 1
    masks[1, 0:8, 0:8] = True       # small instance of class 3 on top
    out = B.semantic_targets(masks, torch.tensor([1, 3]), (2, 2), 8)
    assert out.tolist() == [[4, 2], [2, 2]]
    empty = B.semantic_targets(torch.zeros(0, 16, 16, dtype=torch.bool),
                               torch.zeros(0, dtype=torch.long), (2, 2), 8)
    assert empty.tolist() == [[0, 0], [0, 0]]
    logits = torch.zeros(1, 5, 2, 2)
    assert B.semantic_loss(logits, out[None], 0.3).item() == pytest.approx(
        0.3 * torch.log(torch.tensor(5.0)).item())
