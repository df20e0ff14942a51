"""Shared building blocks; import each from its own module."""
