"""Mask-IoU targets/loss (insplug.core.losses.mask_iou) and YOLACT++'s FastMaskIoUNet."""
import pytest
import torch

from insplug.core.losses.mask_iou import mask_iou_loss, mask_iou_targets
from insplug.core.prototypes.mask_rescoring import FastMaskIoUNet, gather_class_iou, rescore


def test_mask_iou_targets_hand_worked():
    pred = torch.zeros(3, 4, 4)
    gt = torch.zeros(3, 4, 4, dtype=torch.bool)
    pred[0, :2, :] = 0.9          # 8 px predicted
    gt[0, :, :2] = True           # 8 px GT, overlap 4 -> 4 / 12
    pred[1] = 0.51                # all 16 px after binarising; GT 4 px -> 4 / 16
    gt[1, :2, :2] = True
    pred[2] = 0.49                # nothing predicted, GT empty -> 0 by convention
    t = mask_iou_targets(pred, gt)
    assert torch.allclose(t, torch.tensor([4 / 12, 4 / 16, 0.0]))
    assert not t.requires_grad
    # logits with threshold 0
    assert torch.allclose(mask_iou_targets(pred * 10 - 5, gt, threshold=0.0), t)
    with pytest.raises(ValueError, match='gt_masks'):
        mask_iou_targets(pred, gt[:, :2])


def test_mask_iou_loss_l2_and_smooth_l1():
    pred = torch.tensor([0.5, 1.0], requires_grad=True)
    target = torch.tensor([0.25, 0.0])
    loss = mask_iou_loss(pred, target, weight=2.0)
    assert loss.item() == pytest.approx(2.0 * (0.0625 + 1.0) / 2)
    loss.backward()
    assert torch.allclose(pred.grad, torch.tensor([0.5, 2.0]))
    sl1 = mask_iou_loss(pred, target, weight=25.0, loss_type='smooth_l1', reduction='sum')
    assert sl1.item() == pytest.approx(25.0 * (0.5 * 0.0625 + 0.5))
    empty = mask_iou_loss(torch.zeros(0, requires_grad=True), torch.zeros(0), 25.0)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match='loss_type'):
        mask_iou_loss(pred, target, loss_type='l1')


def test_fast_mask_iou_net_shapes_and_rescoring():
    net = FastMaskIoUNet(num_classes=5)
    out = net(torch.rand(3, 1, 64, 64))
    assert out.shape == (3, 5) and (out >= 0).all()
    picked = gather_class_iou(out, torch.tensor([0, 4, 2]))
    assert torch.equal(picked, out[[0, 1, 2], [0, 4, 2]])
    assert torch.allclose(rescore(torch.tensor([0.8, 0.5]), torch.tensor([0.5, 1.7])),
                          torch.tensor([0.4, 0.5]))
    # grids below the 63 px minimum of five stride-2 convs are upsampled, not rejected
    small = torch.rand(2, 32, 40)
    assert net(small).shape == (2, 5)
