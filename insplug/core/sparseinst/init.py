"""Weight initialisations used by SparseInst (Caffe2-style MSRA and Xavier fills)."""
import math

from torch import nn


def msra_fill(module: nn.Module) -> None:
    """He-normal weights (fan-out, ReLU gain), zero bias."""
    nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def xavier_fill(module: nn.Module) -> None:
    """Uniform weights with bound sqrt(3 / fan_in) (Caffe2 XavierFill), zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def prior_bias(prior_prob: float = 0.01) -> float:
    """Logit bias giving sigmoid(bias) = prior_prob (focal-loss initialisation)."""
    return -math.log((1 - prior_prob) / prior_prob)
