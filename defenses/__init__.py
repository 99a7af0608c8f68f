"""Watermark schemes, one file each; each registers itself with @register_defense."""
