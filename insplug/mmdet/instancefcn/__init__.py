"""InstanceFCN for MMDetection: a standalone class-agnostic segment-proposal detector, with an
optional segment classifier (class-aware instances)."""
from .detector import InstanceFCN

__all__ = ['InstanceFCN']
