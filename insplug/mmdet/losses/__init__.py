"""Loss modules of insplug registered in MODELS (one file per loss family)."""
