"""InstanceFCN for MMDetection: a standalone class-agnostic segment-proposal detector."""
from .detector import InstanceFCN

__all__ = ['InstanceFCN']
