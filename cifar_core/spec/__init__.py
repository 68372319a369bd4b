"""Experiment specs as data: the schema and its validation, the presets, the builder's editing
operations, differences between specs, and sweep search spaces. Pure Python: no TensorFlow."""
