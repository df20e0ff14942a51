"""Command-line entry points behind ``tools/train.py``, ``tools/test.py``, ``tools/benchmark.py``."""
