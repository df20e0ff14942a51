"""Shared postprocess (framework-free PyTorch)."""
