"""Lovasz-softmax against brute-force evaluations of the Lovasz extension of the Jaccard loss.

The Jaccard loss of class c on a set M of mispredicted pixels is
``Delta(M) = |M| / |F_c u M|`` (F_c: the pixels of class c). Two independent evaluations of its
Lovasz extension at the error vector ``m_i = |[y_i = c] - p_i,c|``:

* the level-set integral ``sum_k (m_(k) - m_(k+1)) Delta({i : m_i >= m_(k)})`` over the sorted
  distinct error values (the definition), computed set by set;
* ``max`` over ALL permutations s of ``sum_i m_s(i) (Delta(S_i) - Delta(S_{i-1}))`` (greedy
  vertices of the base polytope: for a submodular Delta, as the Jaccard loss is, the extension
  is their maximum), which needs no sorting at all.
"""
import itertools

import pytest
import torch

from insplug.core.losses.lovasz import lovasz_softmax, lovasz_softmax_flat


def jaccard_set_loss(mispredicted: set, foreground: set) -> float:
    union = foreground | mispredicted
    return len(mispredicted) / len(union) if union else 0.0


def extension_by_level_sets(errors, foreground):
    values = sorted(set(errors), reverse=True) + [0.0]
    total = 0.0
    for hi, lo in zip(values[:-1], values[1:]):
        level = {i for i, e in enumerate(errors) if e >= hi}
        total += (hi - lo) * jaccard_set_loss(level, foreground)
    return total


def extension_by_permutations(errors, foreground):
    best = -1.0
    for perm in itertools.permutations(range(len(errors))):
        value, prev, chosen = 0.0, 0.0, set()
        for i in perm:
            chosen.add(i)
            cur = jaccard_set_loss(chosen, foreground)
            value += errors[i] * (cur - prev)
            prev = cur
        best = max(best, value)
    return best


def brute_force(probas, labels, classes, extension):
    """Mean over the averaged classes of the extension at the class's errors."""
    num_classes = probas.shape[1]
    ids = range(num_classes) if classes in ('all', 'present') else classes
    losses = []
    for c in ids:
        fg = {i for i, y in enumerate(labels.tolist()) if y == c}
        if classes == 'present' and not fg:
            continue
        errors = [abs(float(i in fg) - probas[i, c].item()) for i in range(len(labels))]
        losses.append(extension(errors, fg))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('classes', ['present', 'all', [0, 2]])
def test_flat_matches_both_brute_force_extensions(seed, classes):
    gen = torch.Generator().manual_seed(seed)
    num_pixels, num_classes = 6, 4
    probas = torch.softmax(torch.randn(num_pixels, num_classes, generator=gen,
                                       dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (num_pixels,), generator=gen)  # class 3 absent
    ours = lovasz_softmax_flat(probas, labels, classes).item()
    levels = brute_force(probas, labels, classes, extension_by_level_sets)
    perms = brute_force(probas, labels, classes, extension_by_permutations)
    assert ours == pytest.approx(levels, abs=1e-12)
    assert ours == pytest.approx(perms, abs=1e-12)


def test_present_and_all_differ_by_the_absent_classes():
    probas = torch.softmax(torch.randn(8, 3, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 0, 0])  # class 2 absent
    present = lovasz_softmax_flat(probas, labels, 'present')
    everything = lovasz_softmax_flat(probas, labels, 'all')
    # an absent class: F empty, Delta(M) = 1 for any non-empty M, extension = max error
    absent = probas[:, 2].max()
    assert everything.item() == pytest.approx((2 * present.item() + absent.item()) / 3)


def test_perfect_prediction_has_zero_loss_and_ignore_is_left_out():
    labels = torch.tensor([[[0, 1, 2], [2, 1, 255]]])
    probas = torch.nn.functional.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).double()
    probas[0, :, 1, 2] = torch.tensor([0.2, 0.2, 0.6])  # wrong only at the ignored pixel
    assert lovasz_softmax(probas, labels, ignore=255).item() == 0.0
    assert lovasz_softmax(probas, labels.clamp(max=2)).item() > 0.0


def test_per_image_is_the_mean_of_the_images():
    gen = torch.Generator().manual_seed(3)
    probas = torch.softmax(torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64), 1)
    labels = torch.randint(0, 4, (3, 5, 6), generator=gen)
    per_image = lovasz_softmax(probas, labels, per_image=True)
    each = [lovasz_softmax(probas[i:i + 1], labels[i:i + 1]) for i in range(3)]
    assert per_image.item() == pytest.approx(sum(e.item() for e in each) / 3)
    pooled = lovasz_softmax(probas, labels)
    assert pooled.item() != pytest.approx(per_image.item())


def test_gradcheck_on_logits():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (1, 3, 4), generator=gen)
    assert torch.autograd.gradcheck(
        lambda x: lovasz_softmax(torch.softmax(x, 1), labels, 'all'), (logits,))


def test_empty_and_bad_inputs():
    probas = torch.softmax(torch.randn(1, 3, 2, 2), 1).requires_grad_()
    labels = torch.full((1, 2, 2), 255)
    loss = lovasz_softmax(probas, labels, ignore=255)
    loss.backward()
    assert loss.item() == 0.0 and probas.grad.abs().sum() == 0
    with pytest.raises(ValueError, match='lovasz_hinge'):
        lovasz_softmax_flat(torch.rand(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match='present'):
        lovasz_softmax_flat(torch.rand(4, 2), torch.zeros(4, dtype=torch.long), 'some')
    with pytest.raises(ValueError, match='B, H, W'):
        lovasz_softmax(torch.rand(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long))
