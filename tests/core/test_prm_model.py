"""Core wiring shared by the PRM / CountSeg adapters: peak back-propagation through a conv that
carries its own norm / activation (detectron2's ``Conv2d`` convention), the proposal grids and
the mask rescale (hand-worked cases)."""
import torch
import torch.nn as nn

from insplug.core.prm.backprop import peak_backprop_conv2d
from insplug.core.prm.labels import image_labels_and_counts
from insplug.core.prm.model import rescale_masks
from insplug.core.prm.proposals import proposals_on_input_grid


def test_backprop_conv_applies_own_norm_and_activation():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    conv.norm = nn.BatchNorm2d(3).eval()
    conv.norm.running_mean.normal_()
    conv.activation = nn.ReLU()
    x = torch.randn(1, 2, 5, 5)
    ref = conv.activation(conv.norm(nn.functional.conv2d(x, conv.weight, None, 1, 1)))
    assert torch.allclose(peak_backprop_conv2d(conv, x), ref, atol=1e-6)
    plain = nn.Conv2d(2, 3, 3, padding=1)
    assert torch.allclose(peak_backprop_conv2d(plain, x), plain(x), atol=1e-6)


def test_proposals_on_input_grid_hand_worked():
    m = torch.zeros(1, 2, 2, dtype=torch.bool)
    m[0, 0, 1] = True                      # top-right pixel of a 2 x 2 image
    out = proposals_on_input_grid(m, (4, 4), (6, 8))
    expect = torch.zeros(1, 6, 8, dtype=torch.bool)
    expect[0, 0:2, 2:4] = True
    assert torch.equal(out, expect)


def test_rescale_masks_and_labels():
    assert rescale_masks(torch.zeros(0, 4, 4, dtype=torch.bool), (8, 6)).shape == (0, 8, 6)
    m = torch.zeros(1, 2, 2, dtype=torch.bool)
    m[0, 1, 1] = True
    out = rescale_masks(m, (4, 4))
    assert out[0, 2:, 2:].all() and out.sum() == 4
    labels, counts = image_labels_and_counts([2, 2, 0], [False, False, True], 3)
    assert labels.tolist() == [1, 0, 1] and counts.tolist() == [0, 0, 2]
