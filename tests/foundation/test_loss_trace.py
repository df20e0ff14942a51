"""LossTrace: the first / latest window means, the maximum, non-finite losses, divergence."""
import math

from insplug.cli.loss_trace import LossTrace


def test_windows_max_and_a_run_that_learns():
    trace = LossTrace(window=2)
    for loss in (4.0, 2.0, 3.0, 1.0, 0.5):
        trace.update(loss)
    s = trace.summary()
    assert s['loss_first'] == 3.0 and s['loss_last'] == 0.75 and s['loss_max'] == 4.0
    assert s['loss_non_finite'] == 0 and s['diverged'] is False


def test_a_run_that_ends_higher_than_it_began_diverged():
    trace = LossTrace(window=2)
    for loss in (2.0, 3.0, 13.1, 351.0):
        trace.update(loss)
    s = trace.summary()
    assert s['loss_first'] == 2.5 and s['loss_last'] == (13.1 + 351.0) / 2
    assert s['diverged'] is True


def test_a_non_finite_loss_is_counted_and_flags_divergence():
    trace = LossTrace(window=2)
    for loss in (2.0, math.nan, 1.0, math.inf, 0.5):
        trace.update(loss)
    s = trace.summary()
    assert s['loss_non_finite'] == 2 and s['loss_last'] == 0.75 and s['diverged'] is True
    nothing = LossTrace()
    nothing.update(math.nan)
    assert nothing.summary()['diverged'] is True and nothing.summary()['loss_first'] is None


def test_state_round_trip_continues_the_windows():
    """A resumed run (state from checkpoint meta) ends where an uninterrupted one does."""
    losses = [5.0, 4.0, 3.5, 3.0, 2.0, 1.5]
    whole = LossTrace(window=3)
    for loss in losses:
        whole.update(loss)
    before = LossTrace(window=3)
    for loss in losses[:2]:
        before.update(loss)
    after = LossTrace()
    after.load_state_dict(before.state_dict())
    for loss in losses[2:]:
        after.update(loss)
    assert after.summary() == whole.summary()
