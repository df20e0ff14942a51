"""One-to-one assignment of predictions to targets (framework-free)."""
