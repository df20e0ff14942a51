"""RIS (Romera-Paredes & Torr, ECCV 2016): recurrent instance segmentation, release
bernard24/RIS (Lua Torch). ConvLSTM head, matching loss and stop-rule inference."""
from .inference import ris_postprocess
from .loss import ris_loss_single, ris_train_steps
from .model import RISConvNet, RISRecurrentHead, pixel_log_softmax, ris_decode

__all__ = ['RISConvNet', 'RISRecurrentHead', 'pixel_log_softmax', 'ris_decode', 'ris_loss_single',
           'ris_train_steps', 'ris_postprocess']
