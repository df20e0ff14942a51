"""insplug's detectron2 checkpointer reads files weights-only (issue 18, item 1)."""
import os
import pickle

import pytest
import torch

from d2_utils import INSTALL_HINT  # imports no detectron2
from insplug.checkpoints import UnsafeCheckpointError

pytest.importorskip('detectron2', reason=INSTALL_HINT)


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize('suffix', ['.pth', '.pkl'])
def test_safe_checkpointer_refuses_code_and_loads_weights(tmp_path, monkeypatch, suffix):
    from insplug.detectron2.checkpoint import SafeDetectionCheckpointer
    monkeypatch.delenv('INSPLUG_TRUST_CHECKPOINTS', raising=False)
    model = torch.nn.Linear(3, 2)
    marker = tmp_path / 'pwned'
    evil = tmp_path / f'evil{suffix}'
    payload = {'model': model.state_dict(), 'extra': _RunsCommand(f'touch {marker}')}
    if suffix == '.pth':
        torch.save(payload, evil)
    else:
        with open(evil, 'wb') as f:
            pickle.dump(payload, f)
    with pytest.raises(UnsafeCheckpointError):
        SafeDetectionCheckpointer(model).load(str(evil))
    assert not marker.exists()
    good = tmp_path / 'good.pth'
    torch.save({'model': {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}},
               good)
    SafeDetectionCheckpointer(model).load(str(good))
    assert torch.all(model.weight == 0.5)
