"""BlendMask adapters (detector, FCOS box head with top layer, blender mask head)."""
