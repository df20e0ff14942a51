"""Datasets bundled with insplug (framework-free generators and helpers)."""
