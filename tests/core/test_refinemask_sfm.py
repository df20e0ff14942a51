"""RefineMask SFM stages, semantic branch, full mask network and batched pasting: shapes,
gradient flow to every parameter, and pasting against an independent per-pixel reference."""
import pytest
import torch
from torchvision.ops import roi_align

from insplug.core.refinemask import (MultiBranchFusion, RefineMaskNet, SemanticBranch,
                                     SFMStage, paste_masks_in_image)
from insplug.core.refinemask.sfm import select_class


def make_inputs(n=3, channels=16, size=14, sem_channels=8, images=2, feat=16, gen_seed=0):
    gen = torch.Generator().manual_seed(gen_seed)
    feats = torch.randn(n, channels, size, size, generator=gen, requires_grad=True)
    sem = torch.randn(images, sem_channels, feat, feat, generator=gen, requires_grad=True)
    sem_prob = torch.rand(images, 1, feat, feat, generator=gen).requires_grad_()
    rois = torch.tensor([[0, 4.0, 6.0, 40.0, 50.0],
                         [1, 0.0, 0.0, 63.0, 63.0],
                         [0, 20.0, 10.0, 30.0, 22.0]])[:n]
    labels = torch.tensor([2, 0, 1])[:n]
    return feats, sem, sem_prob, rois, labels


@pytest.mark.parametrize('size,channels', [(14, 16), (28, 8), (56, 6)])
def test_sfm_stage_shapes_and_gradients(size, channels):
    """Each stage: (N, C, S, S) -> logits (N, S, S), features (N, C/2, 2S, 2S); every parameter
    and every input (instance feats, semantic feats and probability) gets a gradient."""
    torch.manual_seed(0)
    stage = SFMStage(semantic_channels=8, in_channels=channels, size=size, mask_classes=3)
    feats, sem, sem_prob, rois, labels = make_inputs(channels=channels, size=size)
    logits, out = stage(feats, sem, sem_prob, rois, labels)
    assert logits.shape == (3, size, size)
    assert out.shape == (3, channels // 2, 2 * size, 2 * size)
    (logits.square().mean() + out.square().mean()).backward()
    for name, p in stage.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for t in (feats, sem, sem_prob):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_sfm_stage_appends_its_masks_after_upsampling():
    """The last two output channels are the stage's mask probability and the RoI semantic
    probability, upsampled x2 with aligned corners (checked against torchvision RoIAlign)."""
    torch.manual_seed(0)
    stage = SFMStage(semantic_channels=8, in_channels=16, size=14, mask_classes=3)
    feats, sem, sem_prob, rois, labels = make_inputs()
    with torch.no_grad():
        logits, out = stage(feats, sem, sem_prob, rois, labels)
        up = torch.nn.functional.interpolate(logits.sigmoid()[:, None], size=(28, 28),
                                             mode='bilinear', align_corners=True)
        roi_prob = roi_align(sem_prob, rois, (14, 14), 0.25, 0, True)
        roi_up = torch.nn.functional.interpolate(roi_prob, size=(28, 28), mode='bilinear',
                                                 align_corners=True)
    assert torch.allclose(out[:, -2], up[:, 0], atol=1e-6)
    assert torch.allclose(out[:, -1], roi_up[:, 0], atol=1e-6)
    assert (out[:, :-2] >= 0).all()  # ReLU features


def test_sfm_stage_class_selection_and_bad_channels():
    logits = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    picked = select_class(logits, torch.tensor([2, 0]))
    assert torch.equal(picked[0], logits[0, 2]) and torch.equal(picked[1], logits[1, 0])
    assert torch.equal(select_class(logits[:, :1], torch.tensor([4, 7])), logits[:, 0])
    with pytest.raises(ValueError, match='in_channels'):
        SFMStage(8, 7, 14, 3)


def test_multi_branch_fusion_uses_all_dilations():
    torch.manual_seed(0)
    fusion = MultiBranchFusion(4, dilations=(1, 3, 5))
    assert [b.dilation for b in fusion.branches] == [(1, 1), (3, 3), (5, 5)]
    x = torch.randn(2, 4, 14, 14, requires_grad=True)
    y = fusion(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())
    # receptive field: dilation 5 reaches 5 pixels away, so an impulse spreads 5 px
    impulse = torch.zeros(1, 4, 21, 21)
    impulse[0, :, 10, 10] = 1
    with torch.no_grad():
        diff = (fusion(impulse) - fusion(torch.zeros_like(impulse))).abs().sum(1)[0]
    assert diff[10, 15] > 0 and diff[10, 16] == 0


def test_semantic_branch_shapes():
    branch = SemanticBranch(in_channels=6, channels=8, num_convs=2)
    feats, logits = branch(torch.randn(2, 6, 10, 12))
    assert feats.shape == (2, 8, 10, 12) and logits.shape == (2, 10, 12)


def test_refinemask_net_stages_shapes_and_gradients():
    """Whole network: 14 -> 28 -> 56 -> 112 logits, semantic logits at the input map size,
    gradients reach every parameter (instance convs, semantic branch, all stages)."""
    torch.manual_seed(0)
    net = RefineMaskNet(num_classes=3, stage_num_classes=[3, 3, 3, 1],
                        conv_in_channels_instance=8, conv_out_channels_instance=32,
                        conv_in_channels_semantic=8, conv_out_channels_semantic=8,
                        num_convs_semantic=2)
    roi_feats = torch.randn(3, 8, 14, 14)
    finest = torch.randn(2, 8, 16, 16)
    rois = torch.tensor([[0, 4.0, 6.0, 40.0, 50.0], [1, 0.0, 0.0, 63.0, 63.0],
                         [0, 20.0, 10.0, 30.0, 22.0]])
    stage_logits, sem_logits = net(roi_feats, finest, rois, torch.tensor([2, 0, 1]))
    assert [tuple(l.shape) for l in stage_logits] == [(3, s, s) for s in (14, 28, 56, 112)]
    assert sem_logits.shape == (2, 16, 16)
    assert [s.out_channels for s in net.stages] == [16, 8, 4]
    assert net.final_logits.out_channels == 1  # class-agnostic last stage
    loss = sum(l.square().mean() for l in stage_logits) + sem_logits.square().mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_refinemask_net_config_errors():
    with pytest.raises(ValueError, match='num_classes'):
        RefineMaskNet(num_classes=5, stage_num_classes=[5, 5, 4, 5])
    with pytest.raises(ValueError, match='double'):
        RefineMaskNet(num_classes=5, stage_sup_size=[14, 28, 60])
    net = RefineMaskNet(num_classes=2, conv_in_channels_instance=4, conv_out_channels_instance=32,
                        conv_in_channels_semantic=4, conv_out_channels_semantic=4)
    with pytest.raises(ValueError, match='output_size'):
        net(torch.zeros(1, 4, 7, 7), torch.zeros(1, 4, 8, 8), torch.zeros(1, 5),
            torch.zeros(1, dtype=torch.long))


def test_refinemask_net_handles_zero_rois():
    net = RefineMaskNet(num_classes=2, conv_in_channels_instance=4, conv_out_channels_instance=32,
                        conv_in_channels_semantic=4, conv_out_channels_semantic=4)
    stage_logits, sem = net(torch.zeros(0, 4, 14, 14), torch.zeros(1, 4, 8, 8),
                            torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
    assert [tuple(l.shape) for l in stage_logits] == [(0, s, s) for s in (14, 28, 56, 112)]


def reference_paste(mask, box, h, w):
    """Per-pixel bilinear sampling of one S x S mask at pixel centres, zero outside."""
    s = mask.shape[-1]
    x0, y0, x1, y1 = box.tolist()
    out = torch.zeros(h, w)
    for y in range(h):
        for x in range(w):
            # continuous mask coordinates of the pixel centre (cell centres at i + 0.5)
            u = (x + 0.5 - x0) / (x1 - x0) * s - 0.5
            v = (y + 0.5 - y0) / (y1 - y0) * s - 0.5
            iu, iv = int(torch.floor(torch.tensor(u))), int(torch.floor(torch.tensor(v)))
            value = 0.0
            for dv in (0, 1):
                for du in (0, 1):
                    uu, vv = iu + du, iv + dv
                    if 0 <= uu < s and 0 <= vv < s:
                        value += (1 - abs(u - uu)) * (1 - abs(v - vv)) * mask[vv, uu].item()
            out[y, x] = value
    return out


def test_paste_matches_per_pixel_reference_and_chunks_agree():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 6, 6, generator=gen)
    boxes = torch.tensor([[2.0, 3.0, 12.5, 9.0], [0.0, 0.0, 19.0, 15.0], [10.0, 8.0, 14.0, 15.5]])
    h, w = 16, 20
    probs = paste_masks_in_image(masks, boxes, h, w, threshold=-1)  # uint8 probabilities
    for i in range(3):
        ref = reference_paste(masks[i], boxes[i], h, w)
        assert (probs[i].float() - (ref * 255).floor()).abs().max() <= 1
    binary = paste_masks_in_image(masks, boxes, h, w, threshold=0.5)
    assert binary.dtype == torch.bool and binary.shape == (3, h, w)
    # one RoI per chunk gives the same result as one chunk for all
    tiny = paste_masks_in_image(masks, boxes, h, w, threshold=0.5, chunk_pixels=1)
    assert torch.equal(binary, tiny)
    assert paste_masks_in_image(masks[:0], boxes[:0], h, w).shape == (0, h, w)


def test_class_logits_equal_the_full_classifier_channel_with_gradients():
    """The class-row gather gives the full K-channel 1x1 classifier's selected channel, and
    the same gradients to the features and to the classifier (weight rows of other classes
    get zero)."""
    from insplug.core.refinemask.sfm import class_logits
    gen = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(6, 5, 1).double()
    feats = torch.randn(4, 6, 7, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([4, 0, 4, 2])
    up = torch.randn(4, 7, 7, generator=gen, dtype=torch.float64)
    ref = select_class(conv(feats), labels)
    g_ref = torch.autograd.grad((ref * up).sum(), [feats, conv.weight, conv.bias])
    out = class_logits(conv, feats, labels)
    g_out = torch.autograd.grad((out * up).sum(), [feats, conv.weight, conv.bias])
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert g_out[1][[1, 3]].abs().sum() == 0
    agnostic = torch.nn.Conv2d(6, 1, 1).double()
    assert torch.equal(class_logits(agnostic, feats, labels), agnostic(feats)[:, 0])
    assert class_logits(conv, feats[:0], labels[:0]).shape == (0, 7, 7)


def test_sfm_stage_gradcheck_with_inplace_relu():
    """In-place ReLUs keep autograd exact: float64 gradcheck of a whole SFM stage."""
    torch.manual_seed(0)
    stage = SFMStage(3, 6, 4, 3, semantic_stride=4).double()
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 6, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    sem = torch.randn(1, 3, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    prob = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 2.0, 3.0, 20.0, 25.0], [0, 8.0, 1.0, 30.0, 14.0]],
                        dtype=torch.float64)
    labels = torch.tensor([2, 0])

    def fn(f, s):
        logits, out = stage(f, s, prob, rois, labels)
        return logits, out

    assert torch.autograd.gradcheck(fn, (feats, sem), eps=1e-6, atol=1e-5)
