"""The training loss of one leaderboard entry, summed up: did the run learn or diverge?

A board row that shows AP 0.000 should say whether the method failed or the run did. The trace
keeps the total loss (``log_vars['loss']``) of the first and the latest ``window`` iterations,
the largest loss and the count of non-finite ones; it travels in checkpoint ``meta`` so that a
resumed run keeps the iterations before the interruption.
"""
import math
import statistics

META_KEY = 'leaderboard_loss_trace'


class LossTrace:
    """Total training loss: the first ``window`` values, the latest ``window``, max, non-finite."""

    def __init__(self, window=20):
        self.window = window
        self.first = []
        self.last = []
        self.max = None
        self.non_finite = 0

    def update(self, loss):
        """``loss``: a float or a 0-d tensor (``log_vars['loss']`` still holds its graph)."""
        loss = float(loss.detach()) if hasattr(loss, 'detach') else float(loss)
        if not math.isfinite(loss):
            self.non_finite += 1
            return
        if len(self.first) < self.window:
            self.first.append(loss)
        self.last = (self.last + [loss])[-self.window:]
        self.max = loss if self.max is None else max(self.max, loss)

    def state_dict(self):
        return dict(window=self.window, first=list(self.first), last=list(self.last),
                    max=self.max, non_finite=self.non_finite)

    def load_state_dict(self, state):
        self.window = state['window']
        self.first, self.last = list(state['first']), list(state['last'])
        self.max, self.non_finite = state['max'], state['non_finite']

    def summary(self):
        """``loss_first``/``loss_last`` (window means), ``loss_max``, ``loss_non_finite`` and
        ``diverged``: a non-finite loss, or a run that ended with a higher loss than it began."""
        if not self.first:
            return dict(loss_first=None, loss_last=None, loss_max=None,
                        loss_non_finite=self.non_finite, diverged=self.non_finite > 0)
        first, last = statistics.mean(self.first), statistics.mean(self.last)
        return dict(loss_first=first, loss_last=last, loss_max=self.max,
                    loss_non_finite=self.non_finite,
                    diverged=self.non_finite > 0 or last > first)
