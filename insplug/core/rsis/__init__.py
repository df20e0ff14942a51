"""RSIS (Salvador et al., 2017): recurrent semantic instance segmentation, release
imatge-upc/rsis. Decoder, targets/losses and inference as framework-free PyTorch."""
from .decoder import RSISDecoder, RSISSkips, rsis_decode
from .inference import rsis_postprocess
from .loss import rsis_losses, sequence_order, stop_targets, train_num_steps
from .schedule import curriculum_state

__all__ = ['RSISDecoder', 'RSISSkips', 'rsis_decode', 'rsis_losses', 'rsis_postprocess',
           'sequence_order', 'stop_targets', 'train_num_steps', 'curriculum_state']
