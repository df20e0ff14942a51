"""Does a checkpoint fit a model? Compare state_dicts and explain a mismatch.

``tools/test.py`` and ``--resume`` must not run a model whose parameters were left at their
initial values because the checkpoint belongs to another model. :func:`check_state_dict_fit`
lists the missing, unexpected and wrong-shape keys; :meth:`StateDictFit.explain` turns them into
a message that also says which model the checkpoint seems to come from and how to convert an
official checkpoint.
"""
import re
from dataclasses import dataclass, field

# buffers that a checkpoint may legitimately lack (BatchNorm's counter; official checkpoints with
# FrozenBN never have it); they are counted but never make a checkpoint "not fit"
_OPTIONAL = re.compile(r'(^|\.)num_batches_tracked$')


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fill the model it is loaded into."""


@dataclass
class StateDictFit:
    missing: list = field(default_factory=list)      # model keys the checkpoint lacks
    unexpected: list = field(default_factory=list)   # checkpoint keys the model lacks
    mismatched: list = field(default_factory=list)   # (key, checkpoint shape, model shape)
    num_model_keys: int = 0

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, first=5):
        parts = []
        for name, keys in (('missing', self.missing), ('unexpected', self.unexpected)):
            if keys:
                parts.append(f'{len(keys)} {name} (e.g. {", ".join(keys[:first])})')
        if self.mismatched:
            shown = ', '.join(f'{k}: checkpoint {tuple(a)} vs model {tuple(b)}'
                              for k, a, b in self.mismatched[:first])
            parts.append(f'{len(self.mismatched)} with another shape (e.g. {shown})')
        return f'of the model\'s {self.num_model_keys} keys: ' + '; '.join(parts)

    def explain(self, filename, checkpoint=None):
        lines = [f'checkpoint {filename} does not fit the model: {self.summary()}.']
        origin = guess_origin(checkpoint) if checkpoint is not None else None
        if origin:
            lines.append(f'It seems to come from {origin}.')
        lines.append('Official checkpoints of the methods insplug implements are converted with '
                     '`python tools/convert_checkpoint.py METHOD IN OUT` (see README, model zoo). '
                     'To fine-tune from a partial checkpoint on purpose, set '
                     '`load_from_strict = False` in the config.')
        return ' '.join(lines)


def state_dict_of(checkpoint):
    """The parameter dict inside a checkpoint (mmengine 'state_dict', detectron2 'model', ...)."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model', 'model_state_dict'):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
    return checkpoint


def check_state_dict_fit(model_state, ckpt_state):
    """Compare two ``{key: Tensor}`` dicts (a 'module.' prefix of the checkpoint is ignored).

    Args:
        model_state: the model's state_dict.
        ckpt_state: the checkpoint's state_dict.

    Returns:
        :class:`StateDictFit`.
    """
    ckpt_state = {re.sub(r'^module\.', '', k): v for k, v in ckpt_state.items()}
    fit = StateDictFit(num_model_keys=len(model_state))
    for key, value in model_state.items():
        if key not in ckpt_state:
            if not _OPTIONAL.search(key):
                fit.missing.append(key)
        elif hasattr(ckpt_state[key], 'shape') and tuple(ckpt_state[key].shape) != tuple(
                value.shape):
            fit.mismatched.append((key, tuple(ckpt_state[key].shape), tuple(value.shape)))
    fit.unexpected = [k for k in ckpt_state if k not in model_state and not _OPTIONAL.search(k)]
    return fit


def guess_origin(checkpoint):
    """A short phrase naming the model a checkpoint seems to come from, or None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    cfg_text = meta.get('cfg') if isinstance(meta, dict) else None
    if isinstance(cfg_text, str):
        # mmengine's pretty text: the model's own keys are indented by exactly 4 spaces
        block = re.search(r'^model = dict\(\n(.*?)(?=^\S|\Z)', cfg_text, re.S | re.M)
        match = block and re.search(r"^    type\s*=\s*'([^']+)'", block.group(1), re.M)
        if match:
            return f"an mmengine run of a '{match.group(1)}' model (its saved config says so)"
    state = state_dict_of(checkpoint)
    if not isinstance(state, dict):
        return None
    keys = [re.sub(r'^module\.', '', k) for k in state]
    from insplug.converters import detect_method  # late: converters import this module
    method = detect_method(keys)
    if method is not None:
        return (f'an official {method} release (convert it: python tools/convert_checkpoint.py '
                f'{method} IN OUT)')
    heads = sorted({'.'.join(k.split('.')[:2]) for k in keys if not k.startswith('backbone')})
    if heads:
        return 'a model with the modules ' + ', '.join(heads[:8])
    return None
