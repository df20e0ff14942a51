"""Point-to-object assignment of anchor-free dense heads (framework-free PyTorch)."""
