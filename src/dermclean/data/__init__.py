"""Data layer: manifest, readers, image loading, procedural data, artifacts, splits, validation."""
