"""Dice, focal and objectness losses of SparseInst against independent computations."""
import math

import pytest
import torch

from insplug.core.losses.dice import dice_coefficient, dice_loss, pairwise_dice_coefficient
from insplug.core.sparseinst.loss import (criterion_losses, mask_iou, prepare_loss_inputs,
                                          sparseinst_loss, stack_target_masks)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_dice_hand_worked():
    probs = torch.tensor([[1.0, 0.0, 0.5, 0.5]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    # 2 * (1 + 0.5) / ((1 + 0.25 + 0.25) + 2) = 3 / 3.5
    assert dice_coefficient(probs, target, eps=0).item() == pytest.approx(3 / 3.5)
    # linear denominator: 2 * 1.5 / (2 + 2)
    assert dice_coefficient(probs, target, eps=0, squared=False).item() == pytest.approx(0.75)
    logits = torch.log(probs.clamp(1e-9, 1 - 1e-7) / (1 - probs).clamp(1e-7))
    assert dice_loss(logits, target, eps=0).item() == pytest.approx(1 - 3 / 3.5, abs=1e-5)


def test_pairwise_dice_equals_all_pairs_of_rowwise():
    gen = torch.Generator().manual_seed(0)
    probs, targets = torch.rand(4, 9, generator=gen), torch.rand(3, 9, generator=gen)
    pairwise = pairwise_dice_coefficient(probs, targets)
    for i in range(4):
        for j in range(3):
            p, t = probs[i].tolist(), targets[j].tolist()
            ref = 2 * sum(a * b for a, b in zip(p, t)) / (
                sum(a * a for a in p) + sum(b * b for b in t) + 1e-4)
            assert pairwise[i, j].item() == pytest.approx(ref, rel=1e-5)


def test_dice_loss_gradcheck_and_reductions():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.rand(3, 7, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, targets, reduction='none'), (logits,))
    per = dice_loss(logits, targets, reduction='none')
    assert dice_loss(logits, targets, reduction='sum').item() == pytest.approx(per.sum().item())
    assert dice_loss(logits, targets, reduction='mean').item() == pytest.approx(per.mean().item())
    with pytest.raises(ValueError, match='reduction'):
        dice_loss(logits, targets, reduction='max')


def test_mask_iou_hand_worked():
    # sigmoid >= 0.4 <=> logit >= log(0.4 / 0.6) = -0.405
    logits = torch.tensor([[2.0, -0.3, -0.5, -3.0], [-5.0, -5.0, -5.0, -5.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.6, 0.4, 0.0, 0.0]])
    iou = mask_iou(logits, targets)
    # row 0: pred {0, 1}, target {0, 2}: 1 / 3; row 1: empty pred, target {0}: 0
    assert iou.tolist() == pytest.approx([1 / 3, 0.0], abs=1e-5)


def _independent_losses(inputs):
    """Focal / BCE / dice / objectness written out element by element."""
    num = inputs['num_instances']
    focal = 0.0
    for x, t in zip(inputs['cls_logits'].flatten().tolist(),
                    inputs['cls_targets'].flatten().tolist()):
        p = sigmoid(x)
        p_t = p if t == 1 else 1 - p
        a_t = 0.25 if t == 1 else 0.75
        focal += -a_t * (1 - p_t) ** 2 * math.log(p_t)

    def bce(x, t):
        p = sigmoid(x)
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    masks, targets = inputs['mask_logits'], inputs['mask_targets']
    pix = [bce(x, t) for x, t in zip(masks.flatten().tolist(), targets.flatten().tolist())]
    dice = 0.0
    for row, trow in zip(masks.tolist(), targets.tolist()):
        p = [sigmoid(v) for v in row]
        dice += 1 - 2 * sum(a * b for a, b in zip(p, trow)) / (
            sum(a * a for a in p) + sum(b * b for b in trow) + 1e-4)
    obj = [bce(x, t) for x, t in zip(inputs['obj_logits'].tolist(),
                                     inputs['iou_targets'].tolist())]
    return dict(loss_cls=2 * focal / num, loss_mask=5 * sum(pix) / len(pix),
                loss_dice=2 * dice / num, loss_obj=sum(obj) / len(obj))


def _random_batch(gen, b=2, n=6, k=3, size=8, counts=(3, 0)):
    outputs = dict(cls_logits=torch.randn(b, n, k, generator=gen, dtype=torch.float64),
                   obj_logits=torch.randn(b, n, 1, generator=gen, dtype=torch.float64),
                   mask_logits=torch.randn(b, n, size, size, generator=gen, dtype=torch.float64))
    gt_masks = [(torch.rand(c, 4 * size - 3, 4 * size, generator=gen) > 0.6).float()
                for c in counts]
    gt_labels = [torch.randint(k, (c,), generator=gen) for c in counts]
    return outputs, gt_masks, gt_labels


def test_criterion_against_independent_computation():
    gen = torch.Generator().manual_seed(3)
    outputs, gt_masks, gt_labels = _random_batch(gen)
    inputs = prepare_loss_inputs(outputs, gt_masks, gt_labels, (32, 32), num_classes=3)
    assert inputs['num_instances'] == 3
    assert inputs['cls_targets'].sum().item() == 3  # one positive per matched query
    losses = criterion_losses(inputs)
    ref = _independent_losses(inputs)
    for key, value in ref.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-6), key


def test_matched_targets_are_the_resized_padded_gt():
    gen = torch.Generator().manual_seed(4)
    outputs, gt_masks, gt_labels = _random_batch(gen, counts=(2, 1))
    inputs = prepare_loss_inputs(outputs, gt_masks, gt_labels, (32, 32), num_classes=3)
    stacked = stack_target_masks(gt_masks, (32, 32), (8, 8))
    # mask (29 x 32) zero-padded at the bottom to 32 x 32, then bilinearly resized 4x down
    padded = torch.zeros(1, 1, 32, 32)
    padded[0, 0, :29] = gt_masks[1][0]
    ref = torch.nn.functional.interpolate(padded, size=(8, 8), mode='bilinear',
                                          align_corners=False)[0, 0]
    torch.testing.assert_close(stacked[2], ref)
    rows, cols = inputs['indices'][1]
    assert torch.equal(inputs['mask_targets'][-1].float(), stacked[2 + cols[0]].flatten())


def test_images_without_instances_give_finite_losses_and_gradients():
    gen = torch.Generator().manual_seed(5)
    outputs, gt_masks, gt_labels = _random_batch(gen, counts=(0, 0))
    for v in outputs.values():
        v.requires_grad_(True)
    losses = sparseinst_loss(outputs, gt_masks, gt_labels, (32, 32), num_classes=3)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_mask'].item() == losses['loss_dice'].item() == 0.0
    sum(losses.values()).backward()
    assert outputs['cls_logits'].grad.abs().sum() > 0  # all queries pushed to background


def test_bad_labels_name_num_classes():
    gen = torch.Generator().manual_seed(6)
    outputs, gt_masks, gt_labels = _random_batch(gen)
    gt_labels[0][0] = 3
    with pytest.raises(ValueError, match='num_classes'):
        sparseinst_loss(outputs, gt_masks, gt_labels, (32, 32), num_classes=3)
    with pytest.raises(ValueError, match='gt masks'):
        sparseinst_loss(outputs, gt_masks, [gt_labels[0][:1], gt_labels[1]], (32, 32), 3)
