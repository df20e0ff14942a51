"""RSIS training schedule: the curriculum on the number of steps and when the class and stop
losses switch on (release src/train.py ``trainIters``).

The release starts the curriculum at 2 steps and adds ``steps_cl`` (1) steps whenever the
validation loss has not improved for ``patience`` (15) epochs; the class loss starts after
``class_loss_after`` epochs (20), the stop loss after ``stop_loss_after`` epochs (3000; CVPPP
script 500) and, with the curriculum, only once the limit exceeds ``min_steps`` (1; CVPPP 5).
insplug replaces the validation-patience trigger by a fixed ``interval`` (iterations or epochs):
mmengine's loops compute no validation loss.
"""
from typing import Tuple


def curriculum_state(progress: int, max_steps: int, curriculum: bool = True,
                     start_steps: int = 2, increment: int = 1, interval: int = 1000,
                     class_loss_after: int = 0, stop_loss_after: int = 0,
                     min_steps: int = 1) -> Tuple[int, bool, bool]:
    """State of the schedule at ``progress`` (iterations or epochs done).

    Args:
        progress: iterations (or epochs) done. max_steps: release ``maxseqlen``.
        curriculum: release ``--curriculum_learning``; without it the limit is ``max_steps``.
        start_steps, increment, interval: limit ``start_steps + increment * (progress //
            interval)`` (release: 2, ``steps_cl``, patience-driven).
        class_loss_after, stop_loss_after: progress from which the term is on; -1 = never.
        min_steps: with the curriculum, the stop loss needs a limit above this.

    Returns:
        (step limit, class loss on, stop loss on).
    """
    limit = max_steps
    if curriculum:
        limit = min(max_steps, start_steps + increment * (progress // max(1, interval)))
    use_class = class_loss_after >= 0 and progress >= class_loss_after
    use_stop = stop_loss_after >= 0 and progress >= stop_loss_after
    if curriculum:
        use_stop = use_stop and limit > min_steps
    return limit, use_class, use_stop
