"""Shared backbones (framework-free PyTorch); import each from its own module."""
